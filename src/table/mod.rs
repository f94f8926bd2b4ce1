//! The extent table: one versioned record per extent id.
//!
//! Records live in fixed-size segments reached through a directory sized once from
//! the configured capacity. A segment is allocated by the first *transition* that
//! touches one of its ids (a `OnceLock`); reads never allocate and an id in a
//! segment that does not exist yet reads as [`Snapshot::vacant`]. Growth therefore
//! never takes a lock that readers wait on: a reader does one acquire load to find
//! the segment, then the seqlock read of its slot (`table/slot.rs`).
//!
//! Sparse ids cost one segment each (`segment_len` × 32 bytes); the directory costs
//! 24 bytes per `segment_len` ids of capacity, allocated up front.

mod config;
mod slot;
mod tags;

pub use config::{MAX_DIRECTORY_LEN, MAX_EXTENTS_LIMIT, TableConfig, TableConfigBuilder};

use crate::error::{Error, Result};
use crate::record::{Change, ExtentId, MAX_VERSION, Packed, Snapshot, State, lookup};
use crate::sync::{OnceSlot, spin_hint, thread};
use slot::RecordSlot;
pub(crate) use tags::Tags;

/// How many times [`ExtentTable::snapshot`] spins on a publish in progress before it
/// starts yielding the thread. A publish holds the slot for four stores, so a
/// running writer finishes well within this.
pub const READ_SPINS: u32 = 64;
/// How many times [`ExtentTable::snapshot`] yields after spinning before it returns
/// [`Error::Contended`]: only a writer descheduled mid-publish gets here.
pub const READ_YIELDS: u32 = 10_000;

/// One segment of records (the last one ends at the table's capacity).
#[derive(Debug)]
struct Segment {
    slots: Box<[RecordSlot]>,
}

/// Where a record is.
enum Found<'a> {
    RecordSlot(&'a RecordSlot),
    /// In range, in a segment that does not exist yet.
    Vacant,
    OutOfRange,
}

/// The versioned, lock-minimal extent table.
///
/// # Consistency
///
/// * [`snapshot`](Self::snapshot) returns a record exactly as some committed
///   transition left it (invariant 1, *no torn snapshot*).
/// * [`transition`](Self::transition) commits only if the record's version is still
///   `expected_version`, and bumps it by 2 (invariant 2, *monotonic version*).
/// * Readers take no lock and write no shared memory.
///
/// # Examples
///
/// ```
/// use extentmeta::{Change, ExtentId, ExtentTable, Location, State, checksum};
///
/// let table = ExtentTable::new(extentmeta::TableConfig::default());
/// let id = ExtentId(42);
/// let s0 = table.snapshot(id)?;
/// assert_eq!(s0.state(), State::Vacant);
///
/// let s1 = table.transition(id, s0.version(), Change::BeginWrite)?;
/// let location = Location::new(0, 0, 5);
/// let crc = checksum(id, s1.generation() + 1, b"hello");
/// let s2 = table.transition(id, s1.version(), Change::CommitWrite { location, checksum: crc })?;
/// assert_eq!((s2.state(), s2.generation()), (State::Durable, 1));
///
/// // A transition computed from an old snapshot loses, and says who won.
/// let err = table.transition(id, s1.version(), Change::AbortWrite).unwrap_err();
/// assert_eq!(err.code(), "FPRE001");
/// # Ok::<(), extentmeta::Error>(())
/// ```
#[derive(Debug)]
pub struct ExtentTable {
    directory: Box<[OnceSlot<Segment>]>,
    segment_shift: u32,
    capacity: u64,
}

impl ExtentTable {
    /// An empty table (every id `Vacant` at version 0).
    pub fn new(config: TableConfig) -> Self {
        let segment_len = config.segment_len();
        let segments = config.max_extents().div_ceil(segment_len as u64) as usize;
        ExtentTable {
            directory: (0..segments).map(|_| OnceSlot::default()).collect(),
            segment_shift: segment_len.trailing_zeros(),
            capacity: config.max_extents(),
        }
    }

    /// One past the largest id the table holds.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The record of `id` as of some committed transition.
    ///
    /// A reader that meets a publish in progress retries: [`READ_SPINS`] spins, then
    /// [`READ_YIELDS`] yields.
    ///
    /// The first attempt is inlined into the caller: one directory probe, one slot
    /// probe (the last segment ends at the capacity, so no separate capacity check),
    /// one seqlock read; the record comes back in registers. Retries, vacant ids and
    /// errors leave through out-of-line paths.
    ///
    /// # Errors
    ///
    /// [`Error::ExtentOutOfRange`] beyond the capacity; [`Error::Contended`] if every
    /// attempt met a publish in progress.
    #[inline(always)]
    pub fn snapshot(&self, id: ExtentId) -> Result<Snapshot> {
        match self.find(id) {
            Found::RecordSlot(slot) => {
                let packed = match slot.try_read() {
                    Some(packed) => packed,
                    None => self.snapshot_retry(id, slot)?,
                };
                Ok(snapshot_of(id, &packed))
            }
            Found::Vacant => Ok(Snapshot::vacant(id)),
            Found::OutOfRange => Err(self.out_of_range(id)),
        }
    }

    /// [`snapshot`](Self::snapshot) after its first attempt met a publish in
    /// progress: the remaining spins, then the yields. The same sequence of
    /// attempts as one loop from the start.
    #[cold]
    #[inline(never)]
    fn snapshot_retry(&self, id: ExtentId, slot: &RecordSlot) -> Result<Packed> {
        spin_hint();
        for _ in 1..READ_SPINS {
            if let Some(packed) = slot.try_read() {
                return Ok(packed);
            }
            spin_hint();
        }
        for _ in 0..READ_YIELDS {
            thread::yield_now();
            if let Some(packed) = slot.try_read() {
                return Ok(packed);
            }
        }
        Err(Error::Contended {
            extent: id,
            attempts: READ_SPINS + READ_YIELDS,
        })
    }

    /// One seqlock read attempt: `Ok(None)` if a publish was in progress. Never
    /// spins, so loom models that use it stay finite.
    ///
    /// # Errors
    ///
    /// [`Error::ExtentOutOfRange`] beyond the capacity.
    pub fn try_snapshot(&self, id: ExtentId) -> Result<Option<Snapshot>> {
        match self.find(id) {
            Found::RecordSlot(slot) => Ok(slot.try_read().map(|p| snapshot_of(id, &p))),
            Found::Vacant => Ok(Some(Snapshot::vacant(id))),
            Found::OutOfRange => Err(self.out_of_range(id)),
        }
    }

    /// [`snapshot`](Self::snapshot) for a scan that must not skip a record: a
    /// checkpoint's or a backup's image, a change baseline, `Store::records`.
    /// A publish still in progress after `snapshot`'s spins and yields
    /// ([`Error::Contended`]: its thread was descheduled mid-publish) is waited
    /// out, yielding, instead of reported: a scan that skipped the record would
    /// leave it out of a checkpoint that then retires the journals holding it.
    /// Bounded by the publisher: a publish is four stores, with no lock, I/O
    /// or call between its start and its end, which its thread finishes once
    /// it runs again (only a panic there, which no release build has, could
    /// leave it unfinished, and this wait with it).
    ///
    /// # Errors
    ///
    /// [`Error::ExtentOutOfRange`] beyond the capacity.
    pub(crate) fn snapshot_waiting(&self, id: ExtentId) -> Result<Snapshot> {
        waited_out(|| self.snapshot(id))
    }

    /// Commits `change` if the record of `id` is still at `expected_version`.
    ///
    /// The new record is computed from the committed one under the slot's lock (an
    /// odd version) and published with the version bumped by 2; readers never see
    /// it half-written.
    ///
    /// # Errors
    ///
    /// * [`Error::VersionConflict`] if the version is not `expected_version` (or a
    ///   transition is being published); it carries the current snapshot.
    /// * [`Error::IllegalTransition`] if the transition table does not allow
    ///   `change` from the record's state; nothing changes.
    /// * [`Error::GenerationExhausted`], [`Error::VersionExhausted`] at the bounds.
    /// * [`Error::ExtentOutOfRange`] beyond the capacity.
    /// * [`Error::Contended`] if the conflict's evidence could not be read because
    ///   another transition stayed mid-publish for the whole bounded wait.
    ///
    /// A refused transition on an id whose segment does not exist yet allocates
    /// nothing.
    pub fn transition(
        &self,
        id: ExtentId,
        expected_version: u64,
        change: Change,
    ) -> Result<Snapshot> {
        // Skipped under loom: this fast refusal reads only the directory, as every
        // snapshot does, and touches no record; the extra directory load changed
        // which interleavings loom's bounded search reached, hiding ordering
        // mutants that the models otherwise catch.
        if cfg!(not(loom)) && self.slot(id)?.is_none() {
            // Vacant at version 0: refuse what would be refused, without growing.
            if expected_version != 0 {
                return Err(conflict_error(id, expected_version, Snapshot::vacant(id)));
            }
            if lookup(change.kind(), State::Vacant, false).is_none() {
                return Err(Error::IllegalTransition {
                    extent: id,
                    from: State::Vacant,
                    write_pending: false,
                    change: change.kind(),
                });
            }
        }
        let slot = self.slot_or_grow(id)?;
        let header = slot.header_hint();
        if !expected_version.is_multiple_of(2) || Packed::version_of(header) != expected_version {
            return Err(self.conflict(id, expected_version));
        }
        if expected_version >= MAX_VERSION - 1 {
            return Err(Error::VersionExhausted { extent: id });
        }
        // Refuse an illegal change before taking the slot: the state bits live in the
        // header, and the CAS below proves this header is still current.
        let (_, hinted) = Packed {
            header,
            words: [0; 3],
        }
        .unpack();
        if lookup(change.kind(), hinted.state, hinted.write_pending).is_none() {
            // Report the state as of a real snapshot, not the unvalidated hint.
            let current = self.snapshot(id)?;
            if current.version() != expected_version {
                return Err(conflict_error(id, expected_version, current));
            }
            return Err(Error::IllegalTransition {
                extent: id,
                from: current.state(),
                write_pending: current.write_pending(),
                change: change.kind(),
            });
        }
        let Some(locked) = slot.lock(header) else {
            return Err(self.conflict(id, expected_version));
        };
        let (version, fields) = locked.unpack();
        match change.apply(id, fields) {
            Ok(next) => {
                let packed = Packed::pack(version + 2, &next);
                slot.publish(packed);
                Ok(snapshot_of(id, &packed))
            }
            Err(err) => {
                slot.unlock(header);
                Err(err)
            }
        }
    }

    /// Ids of allocated segments in `[from, capacity)`, in order: every id that has
    /// ever been transitioned is among them. A resumable cursor for scans.
    pub fn allocated_ids(&self, from: u64) -> impl Iterator<Item = ExtentId> + '_ {
        let seg_len = 1u64 << self.segment_shift;
        let first = (from >> self.segment_shift) as usize;
        self.directory
            .iter()
            .enumerate()
            .skip(first)
            .filter(|(_, s)| s.get().is_some())
            .flat_map(move |(i, _)| {
                let start = (i as u64 * seg_len).max(from);
                let end = ((i as u64 + 1) * seg_len).min(self.capacity);
                (start..end).map(ExtentId)
            })
    }

    /// Bytes of memory the table uses now (directory plus allocated segments).
    pub fn memory_bytes(&self) -> usize {
        let allocated: usize = self
            .directory
            .iter()
            .filter_map(|s| s.get())
            .map(|seg| std::mem::size_of_val(&*seg.slots))
            .sum();
        std::mem::size_of_val(&*self.directory) + allocated
    }

    /// Bytes of metadata per record (the slot size).
    pub const BYTES_PER_RECORD: usize = std::mem::size_of::<RecordSlot>();

    /// Installs a recovered record (version, state, generation, location,
    /// checksum) as committed, whatever the slot held: recovery only, before the
    /// table is shared. The version is kept, so versions only grow across restarts.
    ///
    /// # Errors
    ///
    /// [`Error::ExtentOutOfRange`] beyond the capacity; [`Error::Contended`] if the
    /// slot is being published (never during recovery).
    pub(crate) fn restore(&self, snapshot: &Snapshot) -> Result<()> {
        let id = snapshot.extent();
        let slot = self.slot_or_grow(id)?;
        let header = slot.header_hint();
        let Some(_) = slot.lock(header) else {
            return Err(Error::Contended {
                extent: id,
                attempts: 1,
            });
        };
        slot.publish(snapshot.packed());
        Ok(())
    }

    fn conflict(&self, id: ExtentId, expected_version: u64) -> Error {
        match self.snapshot(id) {
            Ok(current) => conflict_error(id, expected_version, current),
            Err(err) => err,
        }
    }

    /// Where `id`'s record is, with one load of its directory entry.
    #[inline(always)]
    fn find(&self, id: ExtentId) -> Found<'_> {
        let segment = (id.0 >> self.segment_shift) as usize;
        let index = (id.0 & ((1 << self.segment_shift) - 1)) as usize;
        // The directory ends at the last segment and the last segment at the
        // capacity, so these two probes are the capacity check.
        match self.directory.get(segment).map(OnceSlot::get) {
            Some(Some(seg)) => match seg.slots.get(index) {
                Some(slot) => Found::RecordSlot(slot),
                None => Found::OutOfRange,
            },
            Some(None) if id.0 < self.capacity => Found::Vacant,
            _ => Found::OutOfRange,
        }
    }

    #[cold]
    #[inline(never)]
    fn out_of_range(&self, id: ExtentId) -> Error {
        Error::ExtentOutOfRange {
            extent: id,
            capacity: self.capacity,
        }
    }

    #[inline(always)]
    fn locate(&self, id: ExtentId) -> Result<(usize, usize)> {
        if id.0 >= self.capacity {
            return Err(self.out_of_range(id));
        }
        let segment = (id.0 >> self.segment_shift) as usize;
        let index = (id.0 & ((1 << self.segment_shift) - 1)) as usize;
        Ok((segment, index))
    }

    #[inline(always)]
    fn slot(&self, id: ExtentId) -> Result<Option<&RecordSlot>> {
        let (segment, index) = self.locate(id)?;
        Ok(self.directory[segment].get().map(|s| &s.slots[index]))
    }

    fn slot_or_grow(&self, id: ExtentId) -> Result<&RecordSlot> {
        let (segment, index) = self.locate(id)?;
        // The last segment ends at the capacity (`find` relies on it).
        let start = (segment as u64) << self.segment_shift;
        let len = (1u64 << self.segment_shift).min(self.capacity - start) as usize;
        let seg = self.directory[segment].get_or_init(|| Segment {
            slots: (0..len).map(|_| RecordSlot::default()).collect(),
        });
        Ok(&seg.slots[index])
    }
}

fn conflict_error(extent: ExtentId, expected_version: u64, current: Snapshot) -> Error {
    Error::VersionConflict {
        extent,
        expected_version,
        current,
    }
}

#[inline(always)]
fn snapshot_of(extent: ExtentId, packed: &Packed) -> Snapshot {
    Snapshot::from_packed(extent, *packed)
}

/// `attempt` until it reports anything but a commit in progress
/// ([`Error::Contended`]: a publish; [`Error::WriteInProgress`]: commits
/// racing a tag lookup), yielding between attempts: a scan that must not skip
/// a record waits for the writers instead. Bounded by them: each further
/// attempt means one committed during the last, or is descheduled mid-publish
/// and finishes once it runs again; an extent written back to back without a
/// pause keeps the scan at it for as long.
pub(crate) fn waited_out<T>(mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    loop {
        match attempt() {
            Err(Error::Contended { .. } | Error::WriteInProgress { .. }) => thread::yield_now(),
            other => return other,
        }
    }
}

const _: () = assert!(
    ExtentTable::BYTES_PER_RECORD <= 48,
    "record budget is 48 bytes"
);

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::record::{Location, checksum};

    /// A table of 10 extents in segments of 8: the last one holds 2.
    fn ten_extents() -> ExtentTable {
        let config = TableConfig::builder()
            .max_extents(10)
            .segment_len(8)
            .build()
            .expect("valid");
        ExtentTable::new(config)
    }

    #[test]
    fn the_last_segment_ends_at_the_capacity() {
        // `find` has no capacity check of its own: the directory and the last
        // segment's length are the check. Ids past the capacity inside the last
        // segment must stay out of range once that segment exists.
        let table = ten_extents();
        let id = ExtentId(9);
        let s0 = table.snapshot(id).expect("in range");
        let s1 = table
            .transition(id, s0.version(), Change::BeginWrite)
            .expect("legal");
        let crc = checksum(id, s1.generation() + 1, b"nine");
        let s2 = table
            .transition(
                id,
                s1.version(),
                Change::CommitWrite {
                    location: Location::new(0, 0, 4),
                    checksum: crc,
                },
            )
            .expect("legal");
        assert_eq!(table.snapshot(id).expect("in range"), s2);
        assert_eq!(table.snapshot(ExtentId(8)).expect("in range").version(), 0);
        assert_eq!(
            table.snapshot(ExtentId(3)).expect("in range").state(),
            State::Vacant
        );
        for beyond in [10, 15, 16, u64::MAX] {
            assert!(
                matches!(
                    table.snapshot(ExtentId(beyond)),
                    Err(Error::ExtentOutOfRange { .. })
                ),
                "id {beyond} read past the capacity"
            );
            assert!(matches!(
                table.try_snapshot(ExtentId(beyond)),
                Err(Error::ExtentOutOfRange { .. })
            ));
        }
        assert_eq!(
            table.memory_bytes(),
            2 * std::mem::size_of::<OnceSlot<Segment>>() + 2 * ExtentTable::BYTES_PER_RECORD,
            "the last segment holds 2 records, not 8"
        );
    }

    /// A writer descheduled mid-publish outlasts `snapshot`'s spins and
    /// yields, which then report it; a scan that must not skip the record
    /// (`snapshot_waiting`) waits it out and reads what the writer left.
    #[test]
    fn a_waiting_snapshot_outlasts_a_stalled_publish() {
        let table = ten_extents();
        let id = ExtentId(9);
        let begun = table.transition(id, 0, Change::BeginWrite).expect("legal");
        let Found::RecordSlot(slot) = table.find(id) else {
            panic!("extent 9 is written")
        };
        let header = slot.header_hint();
        slot.lock(header).expect("no other writer");
        assert!(
            matches!(table.snapshot(id), Err(Error::Contended { .. })),
            "the stalled publish outlasts a snapshot"
        );
        let (waiting, started) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                waiting.send(()).expect("main waits");
                table.snapshot_waiting(id)
            });
            started.recv().expect("the waiter started");
            // Four times a snapshot's patience before the writer resumes:
            // time for the waiter's own first snapshot to meet the stall
            // (if it did not, the test still holds, it only proves less).
            for _ in 0..4 {
                assert!(matches!(table.snapshot(id), Err(Error::Contended { .. })));
            }
            slot.unlock(header);
            let read = waiter.join().expect("waiter").expect("in range");
            assert_eq!(read, begun, "extent 9 as the writer left it");
        });
    }

    /// The scan's decision alone: a publish or a commit racing a tag lookup,
    /// reported in progress, is tried again; anything else is the answer.
    #[test]
    fn a_waiting_snapshot_tries_again_while_a_publish_is_reported() {
        let record = Snapshot::vacant(ExtentId(9));
        let mut reported = 0;
        let read = waited_out(|| {
            reported += 1;
            match reported {
                1 | 3 => Err(Error::Contended {
                    extent: ExtentId(9),
                    attempts: READ_SPINS + READ_YIELDS,
                }),
                2 => Err(Error::WriteInProgress {
                    extent: ExtentId(9),
                }),
                _ => Ok(record),
            }
        });
        assert_eq!(read.expect("read"), record);
        assert_eq!(reported, 4, "three stalls waited out");
        let out: Result<Snapshot> = waited_out(|| {
            Err(Error::ExtentOutOfRange {
                extent: ExtentId(99),
                capacity: 10,
            })
        });
        assert!(matches!(out, Err(Error::ExtentOutOfRange { .. })));
    }
}
