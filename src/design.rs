//! # Design: concepts, invariants, durability
//!
//! The notes an engine author needs to use the crate well; the detailed arguments
//! live next to the code they justify (named below).
//!
//! ## Concepts
//!
//! * **Extent**: the unit of data the engine stores (an SST block, an archive chunk,
//!   a page run), named by an [`ExtentId`](crate::ExtentId) that is never reused.
//! * **Location**: where the extent's bytes live now (device, offset, length). An
//!   attribute, never an identity: compaction and remap change it.
//! * **Content generation**: bumped by every write that changes the bytes.
//!   Compaction and remap move bytes without changing them and keep it.
//! * **Checksum**: CRC32C of the bytes seeded with extent id and generation, so a
//!   misdirected or misplaced block fails verification.
//! * **Version**: bumped by 2 by every committed transition of a record; odd while a
//!   transition is being published (the seqlock, `src/table/slot.rs`).
//! * **State**: `Vacant`, `Durable`, `Compacting`, `Quarantined`, plus a
//!   `write_pending` mark; the allowed transitions are data
//!   ([`TRANSITIONS`](crate::TRANSITIONS)) checked on every change.
//!
//! A [`Snapshot`](crate::Snapshot) is one record at one version: all of its fields
//! belong to the same committed transition.
//!
//! ## Invariants
//!
//! Each is checked by name in the tests (unit, proptest, loom, emulator, crash).
//!
//! 1. **No torn snapshot.** Every snapshot equals the result of some committed
//!    transition.
//! 2. **Monotonic version.** Versions only grow; a transition commits only if the
//!    version it was computed from is still current (compare-and-swap).
//! 3. **Linearizable reads.** A read returns the bytes of a content generation that
//!    was current at some instant inside the call, or a typed error.
//! 4. **Generation-tagged cache.** An entry is served only while its generation is
//!    current; a fill whose generation changed while it loaded is rejected.
//! 5. **Pending is never cached.** Bytes of a write that has not committed are never
//!    served nor cached.
//! 6. **Compaction loses nothing.** It commits only if the record is unchanged since
//!    it began, else aborts and frees its target.
//! 7. **FPRE004 means a real fault.** Verification checks the bytes of one snapshot;
//!    a version change is a race, retried; FPRE004 only after the retry limit of
//!    re-reads of one stable version.
//! 8. **The last good copy is never dropped.** Quarantine keeps the record; remap
//!    writes a verified good copy before the bad location is retired; a bad
//!    location is never handed out again.
//! 9. **Acknowledged means durable.** On a durable store, a write, compaction, remap
//!    or quarantine whose call returned `Ok` survives any crash. Recovery yields the
//!    state of some prefix of the issued operations containing every acknowledged
//!    one; no record is half-applied; recovering twice yields the same state.
//! 10. **No reuse before durability (space safety).** A location unreferenced by a
//!     commit (overwrite, compaction, remap, delete) returns to the allocator only
//!     when *both* hold: the journal record of that commit is durable, *and* the
//!     reader grace period has passed (`src/space/reclaim.rs`). A new copy
//!     (write, compaction, remap) is synced before the record that points to it is
//!     committed. Otherwise a crash could leave the durable record pointing at
//!     bytes that were overwritten.
//! 11. **One owner; failed opens change nothing.** A directory is open in at most
//!     one store at a time; an open that fails (corruption, newer format, lock held)
//!     leaves every file as it found it, and an open never shrinks or overwrites
//!     device bytes the metadata cannot account for (a missing pointer or journal
//!     beside data is refused, FPRE023).
//! 12. **A fault is never corruption.** Every state a power cut can leave (unsynced
//!     sectors persisted in any subset, undone directory operations) opens and
//!     recovers; a typed corruption error means bytes that were durable changed.
//! 13. **A failed sync is never trusted.** Once a sync of a file fails, no write
//!     whose bytes reached that file before the failure was seen is acknowledged,
//!     whichever thread syncs next.
//! 14. **Failed means invisible.** A write or delete that returns an error is never
//!     visible to readers, before or after a reopen; the one exception is
//!     [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown), whose operation is
//!     invisible until a reopen and then wholly there or wholly absent. Nothing a
//!     crash can take back is served as committed.
//!
//! ## Durability model
//!
//! [`Store::open`](crate::Store::open) keeps, next to the device files, a metadata
//! journal in the style of RocksDB's MANIFEST (details in `src/journal/mod.rs`):
//!
//! * **What is durable when.** A write of at most `inline_write_max` bytes (32 KiB)
//!   writes its bytes to its location without a sync and appends the record its
//!   commit will make *with the bytes* to the journal; a larger write appends the
//!   bare record while its bytes sync (a flusher thread leads the group commit at
//!   once, so the two syncs run side by side). The journal sync (group commit:
//!   concurrent committers share one) makes the record durable, and only then is
//!   the write committed in the table, where readers see it, and `write` returns
//!   `Ok`. An inline write's bytes reach their location durably at the next
//!   checkpoint or `close`, which sync the devices first; after a crash recovery
//!   writes them back from the journal. A batch's records are one append behind a
//!   batch marker: recovery applies all of them or none. A delete does the same
//!   under the pending mark. So no reader ever sees a write or delete that
//!   a crash or a failed journal could take back. Compaction and remap, which never
//!   change what a read returns, commit first and journal after, and retire the
//!   location they unreferenced only once that record is durable.
//! * **What a crash can lose.** Only work whose call had not returned `Ok`: a write
//!   in flight is either fully there after recovery (its record became durable) or
//!   not at all (its bytes are unreferenced space). A larger write's record can be
//!   durable before its bytes: recovery reads the bytes of every such record that
//!   no later marker covers, and restores the record it replaced if they do not
//!   verify (the write was never acknowledged); the decision is journaled at once,
//!   so it never changes. The marker rides the next append after the write, and
//!   from then on a fault of those bytes is the verifier's to report; before it,
//!   a fault and a torn write look the same, the one place where a fault can
//!   bring back older bytes (then listed in the recovery report).
//! * **What recovery does.** It loads the checkpoint `CURRENT` names, replays the
//!   journals after it (per extent the record with the highest version wins, so
//!   replay is idempotent), drops a torn tail (the unsynced last write, whose
//!   sectors may have persisted in any subset: every frame records how much of its
//!   journal was durable when it was written, so a tear is told from damage
//!   exactly) and keeps it as evidence in a side file, refuses corruption with a
//!   typed error (a bad record that a later write found durable: FPRE021; a bad
//!   checkpoint: FPRE022; a missing or emptied journal: FPRE023), rebuilds free
//!   space as the complement of the referenced locations and the bad list (bytes
//!   written but never committed are reclaimed), and checks every device file is
//!   long enough. Only after every check passes does it change a file, and before
//!   it appends anything it syncs the newest journal and the directory: after a
//!   process crash (not a power cut) recovery may have read bytes the OS still held
//!   unsynced, and records acknowledged on top of them must not vanish at a later
//!   power cut (found by the emulator's process kills).
//! * **Bounded journal.** Past `journal_max_bytes` the journal is rotated: a new
//!   journal, a checkpoint image of the table, bad list and degraded devices, then
//!   an atomic pointer switch (temp file, sync, rename, directory sync).
//! * **Faults of a real disk.** A failed device sync poisons that device file until
//!   a reopen (later syncs fail too, whatever the kernel answers) and steers new
//!   writes elsewhere; a failed journal write or sync fails every later change
//!   until a reopen ([`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown) for
//!   what it carried). A full file system refuses writes with
//!   [`Error::DiskFull`](crate::Error::DiskFull) while a reserve keeps room for
//!   deletes, commits, checkpoints and `close`; writes resume once space is freed.
//!   The journal writer and the open sequence that decide all this are written
//!   once, without I/O (`src/journal/writer.rs`, `src/journal/open.rs`), and the
//!   emulator crash-tests the same code the store runs.
//!
//! ## Choosing a constructor
//!
//! * [`Store::open`](crate::Store::open): the crate owns durability. Choose it
//!   unless the engine already has a manifest it must stay the source of truth for.
//! * [`Store::new`](crate::Store::new) over any [`Backend`](crate::Backend): the
//!   table lives in memory. An engine with its own manifest persists the records
//!   the [event listener](crate::Store::set_listener) hands it (every durable
//!   change, relocations by compaction and repair included), in
//!   [`Snapshot::to_bytes`](crate::Snapshot::to_bytes)' stable encoding or
//!   field by field, with the locations found bad
//!   ([`Event::LocationRetired`](crate::events::Event::LocationRetired)), and
//!   restarts with [`Store::with_manifest`](crate::Store::with_manifest) (or,
//!   keeping no bad locations,
//!   [`Store::with_records`](crate::Store::with_records)), which reinstalls
//!   them without copying a byte. Choose it for caches of data that lives elsewhere,
//!   tests, and engines whose manifest must stay the source of truth.
//!
//! ## The layers: a map of the source
//!
//! Each layer imports only from itself and the layers below it; the two drivers
//! at the top never import each other.
//!
//! ```text
//!   store      the public Store: the thread driver of the machines, the durable
//!              driver of the journal writer, prefetch and readahead, scrubbing
//!   sim        the emulator: the same machines and writer on an emulated disk
//!   ─────────────────────────────────────────────────────────────────────────
//!   protocol   one sans-IO machine per operation (read, write, batch, delete,
//!              compact, verify, repair) and the integrity ladder they share
//!   ─────────────────────────────────────────────────────────────────────────
//!   journal    the on-disk format (frames, checkpoints, pointer), recovery, and
//!              the I/O-free writer and open sequence both drivers run
//!   ─────────────────────────────────────────────────────────────────────────
//!   table      the seqlock record table     cache   the generation-tagged cache
//!   space      the allocator, devices, planner and reclaimer
//!   ─────────────────────────────────────────────────────────────────────────
//!   record     snapshots, states, the transition rules, the packed words
//!   ─────────────────────────────────────────────────────────────────────────
//!   shared     sync (std and parking_lot, or loom), error, bytes, fs (the
//!              file-system abstraction), backend (device I/O), events, policy
//! ```
//!
//! `tests/layout.rs` checks the rules that keep this map true: no module imports
//! a layer above it, no two files import each other, no source file over 600
//! lines outside its tests, and every module's first line says what it is.
