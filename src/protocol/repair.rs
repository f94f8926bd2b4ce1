//! The repair after FPRE004: quarantine, then remap from a good copy.
//!
//! # Consistency
//!
//! Quarantine is a compare-and-swap against the faulted snapshot's version: if the
//! record changed since (a write committed new bytes elsewhere), the fault is no
//! longer this record's and the repair stops. Quarantine keeps the record and its
//! location; the bad location is marked so it is never handed out again
//! (invariant 8). Remap writes a good copy, from the backend's replica source or a
//! cache entry whose checksum verifies, to a fresh location, reads it back, verifies
//! it, and only then commits `Quarantined → Durable`; the bad location is retired
//! after. A fresh location whose write or read-back fails is marked bad too, and
//! the copy goes to another (at most [`MAX_TARGETS`] in all). With no good copy
//! the record stays quarantined: nothing is dropped.

use super::{Core, IoRequest, IoResult, MAX_ATTEMPTS, Machine, Step};
use crate::bytes::Bytes;
use crate::error::Error;
use crate::events::{Event, Relocation};
use crate::journal::Entry;
use crate::record::{Change, ExtentId, Location, Snapshot, State, Tag, checksum};
use crate::space::Placement;

/// How a repair ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairOutcome {
    /// Quarantined and remapped: the record is `Durable` at a fresh location.
    Remapped(Snapshot),
    /// Quarantined, but no good copy was found (or writing it failed at every
    /// location tried): the record stays `Quarantined` and keeps its location.
    NoGoodCopy(Snapshot),
    /// The record changed since the fault was found; nothing was done.
    Raced,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Quarantined in the table; the bad mark and the quarantine are being
    /// journaled.
    Quarantining,
    FetchingCopy,
    Writing,
    Syncing,
    ReadingBack,
    /// A location's bad mark is being journaled alone: the copy's, which
    /// read back wrong, or the faulted one's, when the quarantine lost its race.
    MarkingBad,
    /// Remapped in the table; waiting for the record to be durable before the
    /// faulted location is retired and the remap reported.
    Remapping {
        remapped: Snapshot,
        old: Option<Location>,
        /// The remapped generation's tag, read before the remap (see
        /// `RepairOp::tag`).
        tag: Tag,
    },
    Finished,
}

/// Quarantine and remap of one faulted extent.
#[derive(Debug)]
pub(crate) struct RepairOp {
    id: ExtentId,
    faulted: Snapshot,
    quarantined: Option<Snapshot>,
    /// The faulted generation's tag, read while the record was still the
    /// one this repair moves (before its quarantine or remap commits): a write
    /// that commits after that may forget the tag before the event is built,
    /// and one that commits before it makes the transition conflict.
    tag: Tag,
    /// Whether this repair's own transition quarantined the record (counted once,
    /// whatever happens to the remap after).
    quarantined_here: bool,
    target: Option<Location>,
    /// Locations the copy was written to so far (each one that failed is
    /// marked bad); at most [`MAX_TARGETS`].
    targets: u32,
    /// The device the next target should avoid: the faulted location's, then
    /// that of the last target that failed.
    avoid: u16,
    /// The verified copy being installed: kept in [`Rescued`] if the remap
    /// fails.
    copy: Option<Bytes>,
    phase: Phase,
}

/// Locations one repair writes its copy to before it gives up: a target whose
/// write or read-back failed is marked bad and the copy goes to another
/// (preferably on another device), so one bad sector among the free space does
/// not leave the extent quarantined until the next verification. Bounded, so
/// that a device failing every write costs at most this many locations per
/// repair.
const MAX_TARGETS: u32 = 3;

/// Verified copies of quarantined extents whose repair could not install
/// them (the remap failed: no space, the copy's write, sync or read-back
/// failed), by extent: the copy a repair found in the cache would otherwise
/// be lost to the cache's next eviction, though it is the extent's last
/// good copy (invariant 8). A later repair (a `verify`, the scrubber) or a
/// read of the quarantined extent finds it here. Kept until a repair installs
/// it, a write or delete of the extent commits, or a later generation asks.
/// Bounded by the extents quarantined with a copy whose remap failed and
/// that nothing has written or deleted since, one copy each.
/// (parking_lot's even under loom: no loom model repairs.)
#[derive(Debug, Default)]
pub(crate) struct Rescued {
    kept: parking_lot::Mutex<std::collections::HashMap<ExtentId, (u64, Bytes)>>,
}

impl Rescued {
    /// Keeps `bytes`, generation `generation` of `id`, unless a copy of that
    /// generation or a later one is kept already; then drops it again if
    /// `committed` (asked after it is kept) says a write or delete of `id`
    /// committed since the caller looked. A commit that ran before the keep
    /// found nothing to `forget`; its transition happened before its
    /// `forget` took the lock, and so before the keep took it after that,
    /// so `committed` sees it. One that runs after `committed` looked forgets
    /// the copy itself. Either way no copy outlives its generation. A remap
    /// since (same generation, another location) leaves the copy: it holds
    /// the generation's bytes still, and may be the one another repair of
    /// the new location found kept and relies on.
    fn keep(&self, id: ExtentId, generation: u64, bytes: Bytes, committed: impl FnOnce() -> bool) {
        {
            let mut kept = self.kept.lock();
            if kept.get(&id).is_some_and(|(g, _)| *g >= generation) {
                return;
            }
            kept.insert(id, (generation, bytes));
        }
        if committed() {
            let mut kept = self.kept.lock();
            if kept.get(&id).is_some_and(|(g, _)| *g == generation) {
                kept.remove(&id);
            }
        }
    }

    /// Drops `id`'s copy: installed, or a write or delete of it committed.
    /// Always under the lock (an uncontended lock per commit): a shortcut
    /// that skipped it when nothing seemed kept could miss a copy a repair
    /// was keeping at that moment (see `keep`).
    pub(crate) fn forget(&self, id: ExtentId) {
        self.kept.lock().remove(&id);
    }

    /// The kept copy of `snapshot`'s generation, if it matches its checksum
    /// (checked outside the lock); a copy of an older generation is dropped.
    pub(crate) fn copy_of(&self, snapshot: &Snapshot) -> Option<Bytes> {
        let (generation, bytes) = {
            let mut kept = self.kept.lock();
            let (generation, bytes) = kept.get(&snapshot.extent())?.clone();
            if generation < snapshot.generation() {
                kept.remove(&snapshot.extent());
                return None;
            }
            (generation, bytes)
        };
        let good = generation == snapshot.generation()
            && checksum(snapshot.extent(), generation, &bytes) == snapshot.checksum();
        good.then_some(bytes)
    }
}

/// Whether `id`'s record is no longer the quarantined `q`: a write, delete
/// or remap committed on top of it (a record that cannot be read now proves
/// nothing either way, and counts as not moved).
fn moved_on(core: &Core, id: ExtentId, q: &Snapshot) -> bool {
    (core.table.snapshot_waiting(id))
        .is_ok_and(|now| now.location() != q.location() || generation_gone(&now, q))
}

/// Whether a write or delete of `id` committed on top of `q`: its generation
/// is gone (a remap keeps the generation).
fn committed_since(core: &Core, id: ExtentId, q: &Snapshot) -> bool {
    (core.table.snapshot_waiting(id)).is_ok_and(|now| generation_gone(&now, q))
}

/// Whether `now` no longer holds `q`'s generation: written over or deleted.
fn generation_gone(now: &Snapshot, q: &Snapshot) -> bool {
    now.generation() != q.generation() || now.state() == State::Vacant
}

impl RepairOp {
    /// A repair of `faulted`, the snapshot whose location failed persistently, or a
    /// retried remap of a record already quarantined.
    pub(crate) fn new(faulted: Snapshot) -> Self {
        RepairOp {
            id: faulted.extent(),
            faulted,
            quarantined: None,
            tag: Tag::EMPTY,
            quarantined_here: false,
            target: None,
            targets: 0,
            avoid: faulted.location().device,
            copy: None,
            phase: Phase::FetchingCopy,
        }
    }

    /// Whether this repair quarantined the record itself: true exactly once per
    /// quarantine, even if its remap then loses a race (a write, or another
    /// repair's remap, committed first).
    pub(crate) fn quarantined_here(&self) -> bool {
        self.quarantined_here
    }

    fn matches(&self, bytes: &[u8]) -> bool {
        checksum(self.id, self.faulted.generation(), bytes) == self.faulted.checksum()
    }

    fn give_up(&mut self, core: &Core) -> Step<RepairOutcome> {
        self.phase = Phase::Finished;
        if let Some(target) = self.target.take() {
            core.allocator.free(target);
        }
        match self.quarantined {
            // A write or delete that committed on top of the quarantine since
            // (the good copy's generation then vanished from the cache and the
            // replica) made the faulted bytes no longer the record's: a race,
            // never a fault left unrepaired (FPRE004 means a real fault). Only
            // a commit counts: a write merely pending may still fail and leave
            // the record quarantined with its fault, and a record that cannot
            // be read now proves nothing either.
            Some(q) if !moved_on(core, self.id, &q) => {
                if let Some(copy) = self.copy.take() {
                    let committed = || committed_since(core, self.id, &q);
                    core.rescued.keep(self.id, q.generation(), copy, committed);
                }
                Step::Done(Ok(RepairOutcome::NoGoodCopy(q)))
            }
            Some(_) | None => Step::Done(Ok(RepairOutcome::Raced)),
        }
    }

    fn write_copy(&mut self, core: &Core, bytes: Bytes) -> Step<RepairOutcome> {
        self.copy = Some(bytes.clone());
        let placement = Placement::Prefer(self.avoid);
        match core.allocate(self.faulted.location().length, placement) {
            Ok(target) => {
                self.target = Some(target);
                self.targets += 1;
                self.phase = Phase::Writing;
                Step::Io(IoRequest::Write(target, bytes))
            }
            Err(_) => self.give_up(core),
        }
    }

    fn remap(&mut self, core: &Core) -> Step<RepairOutcome> {
        let (Some(q), Some(target)) = (self.quarantined, self.target) else {
            self.phase = Phase::Finished;
            return Step::Done(Err(Error::Internal {
                what: "remap without a quarantined record and a target",
            }));
        };
        let mut at = q;
        // Bounded: MAX_ATTEMPTS begun writes at most, then as a failed remap.
        for _ in 0..MAX_ATTEMPTS {
            match self.remap_at(core, at, target) {
                Ok(step) => return step,
                Err(current) => at = current,
            }
        }
        self.give_up(core)
    }

    /// One try at the remap transition on top of `q`: the step, or the
    /// record to try again on (a write merely begun bumped the version).
    fn remap_at(
        &mut self,
        core: &Core,
        q: Snapshot,
        target: Location,
    ) -> std::result::Result<Step<RepairOutcome>, Snapshot> {
        let tag = core.tag_of(&q);
        Ok(
            match core
                .table
                .transition(self.id, q.version(), Change::Remap { location: target })
            {
                Ok(remapped) => {
                    self.target = None;
                    // Marked bad: `free` will never put it back in the pool; retired after
                    // the remap is durable all the same (invariant 10).
                    let old = core.retire_unless_early(Some(self.faulted.location()));
                    self.phase = Phase::Remapping { remapped, old, tag };
                    Step::Io(IoRequest::Journal(vec![Entry::put(&remapped, tag)]))
                }
                // Only a commit ends the repair: a write merely begun (its pending
                // mark bumped the version) leaves the faulted generation
                // quarantined where it was, and the remap goes on top of it (the
                // write then proposes again on top of the remap, as after any).
                Err(Error::VersionConflict { current, .. })
                    if current.state() == State::Quarantined
                        && current.generation() == q.generation()
                        && current.location() == q.location() =>
                {
                    self.quarantined = Some(current);
                    return Err(current);
                }
                // A write committed new bytes meanwhile (our copy is obsolete), or
                // another repair remapped the record.
                Err(Error::VersionConflict { .. }) => {
                    self.phase = Phase::Finished;
                    if let Some(t) = self.target.take() {
                        core.allocator.free(t);
                    }
                    Step::Done(Ok(RepairOutcome::Raced))
                }
                Err(err) => {
                    // The target, never referenced by a record, is freed and the
                    // record stays quarantined; `give_up` keeps the copy.
                    let _ = self.give_up(core);
                    Step::Done(Err(err))
                }
            },
        )
    }
}

impl Machine for RepairOp {
    type Output = RepairOutcome;

    fn start(&mut self, core: &Core) -> Step<RepairOutcome> {
        // The location failed every re-read: whatever happens to the record, that
        // location must never be handed out again (marked before the record can
        // move on and retire it).
        core.mark_bad(self.faulted.location());
        if self.faulted.state() == State::Quarantined {
            // Already quarantined (an earlier repair found no good copy, or could not
            // write it): try the remap again.
            self.quarantined = Some(self.faulted);
            self.phase = Phase::FetchingCopy;
            return Step::Io(IoRequest::GoodCopy(self.id, self.faulted.generation()));
        }
        self.tag = core.tag_of(&self.faulted);
        let mut at = self.faulted;
        // Bounded: MAX_ATTEMPTS writes or compactions merely begun at most,
        // then as a lost race.
        for _ in 0..MAX_ATTEMPTS {
            match core
                .table
                .transition(self.id, at.version(), Change::Quarantine)
            {
                Ok(q) => {
                    self.quarantined = Some(q);
                    self.quarantined_here = true;
                    self.phase = Phase::Quarantining;
                    let bad = Entry::Bad(self.faulted.location());
                    return Step::Io(IoRequest::Journal(vec![bad, Entry::put(&q, self.tag)]));
                }
                // A write or compaction merely begun (its mark bumped the
                // version) leaves the faulted bytes the record's: the
                // quarantine goes on top of it, as a remap does (the write
                // then commits over the quarantine; the compaction fails).
                Err(Error::VersionConflict { current, .. })
                    if matches!(current.state(), State::Durable | State::Compacting)
                        && current.generation() == self.faulted.generation()
                        && current.location() == self.faulted.location() =>
                {
                    at = current;
                }
                // A write or delete committed since the fault was decided: a
                // race for the record, but the location failed every re-read
                // all the same, and its mark (made above) is journaled so that
                // a reopen keeps it out of use too (`MarkingBad` then answers
                // `Raced`).
                Err(Error::VersionConflict { .. }) => break,
                Err(err) => {
                    self.phase = Phase::Finished;
                    return Step::Done(Err(err));
                }
            }
        }
        self.phase = Phase::MarkingBad;
        Step::Io(IoRequest::Journal(vec![Entry::Bad(
            self.faulted.location(),
        )]))
    }

    fn on_io(&mut self, core: &Core, result: IoResult) -> Step<RepairOutcome> {
        match (self.phase, result) {
            (Phase::Quarantining, IoResult::Done(Ok(()))) => {
                if let Some(record) = self.quarantined {
                    let tag = self.tag;
                    core.events
                        .emit(|seq| Event::Quarantined { seq, record, tag });
                }
                self.phase = Phase::FetchingCopy;
                Step::Io(IoRequest::GoodCopy(self.id, self.faulted.generation()))
            }
            // Quarantined in memory but not durable (the journal failed): nothing
            // more can be made durable either.
            (Phase::Quarantining | Phase::Remapping { .. }, IoResult::Done(Err(err))) => {
                self.phase = Phase::Finished;
                Step::Done(Err(err))
            }
            (Phase::Remapping { remapped, old, tag }, IoResult::Done(Ok(()))) => {
                self.phase = Phase::Finished;
                let from = self.faulted.location();
                core.report_then_retire(old, |seq| Event::Relocated {
                    seq,
                    record: remapped,
                    tag,
                    from,
                    cause: Relocation::Remap,
                });
                core.rescued.forget(self.id);
                Step::Done(Ok(RepairOutcome::Remapped(remapped)))
            }
            // The journal could not take the bad mark: its error says a reopen
            // is needed, which a race or a missing copy would hide.
            (Phase::MarkingBad, IoResult::Done(Err(err))) if err.is_journal_refusal() => {
                let _ = self.give_up(core);
                Step::Done(Err(err))
            }
            // A target's mark is durable: the copy goes to another location.
            (Phase::MarkingBad, IoResult::Done(Ok(())))
                if self.targets < MAX_TARGETS
                    && self
                        .quarantined
                        .is_some_and(|q| !moved_on(core, self.id, &q)) =>
            {
                match self.copy.take() {
                    Some(copy) => self.write_copy(core, copy),
                    None => self.give_up(core),
                }
            }
            (Phase::MarkingBad, _) => self.give_up(core),
            (Phase::FetchingCopy, IoResult::Read(copy)) => {
                let good = copy
                    .ok()
                    .filter(|b| self.matches(b))
                    .or_else(|| core.verified_cached_copy(&self.faulted));
                match good {
                    Some(bytes) => self.write_copy(core, bytes),
                    None => self.give_up(core),
                }
            }
            (Phase::Writing, IoResult::Done(Ok(()))) => match self.target {
                Some(target) => {
                    self.phase = Phase::Syncing;
                    Step::Io(IoRequest::Sync(target.device))
                }
                None => self.give_up(core),
            },
            (Phase::Syncing, IoResult::Done(Ok(()))) => match self.target {
                Some(target) => {
                    self.phase = Phase::ReadingBack;
                    Step::Io(IoRequest::Read(target))
                }
                None => self.give_up(core),
            },
            (Phase::ReadingBack, IoResult::Read(Ok(bytes))) if self.matches(&bytes) => {
                self.remap(core)
            }
            // The fresh copy reads back wrong, or its location failed the
            // write or the read-back (`location_failed`): that location is bad
            // too, and the mark is journaled so a restart keeps it (a failed
            // sync is the device's).
            (Phase::ReadingBack, IoResult::Read(Err(e)))
            | (Phase::Writing, IoResult::Done(Err(e)))
                if !super::location_failed(&e) =>
            {
                self.give_up(core)
            }
            (Phase::ReadingBack, IoResult::Read(_)) | (Phase::Writing, IoResult::Done(Err(_))) => {
                match self.target.take() {
                    Some(target) => {
                        core.mark_bad(target);
                        self.avoid = target.device;
                        self.phase = Phase::MarkingBad;
                        Step::Io(IoRequest::Journal(vec![Entry::Bad(target)]))
                    }
                    None => self.give_up(core),
                }
            }
            _ => self.give_up(core),
        }
    }

    fn abandon(&mut self, core: &Core) {
        if !matches!(self.phase, Phase::Finished)
            && let Some(target) = self.target.take()
        {
            core.allocator.free(target);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::protocol::test_support;

    /// Commits generation `g` of `id` at a fresh location; its record.
    fn commit(core: &Core, id: ExtentId, g: u64) -> Snapshot {
        test_support::commit(core, id, g, Tag::EMPTY)
    }

    /// A quarantine's event carries the faulted generation's tag even when a
    /// write of the extent commits (and forgets that tag) while the
    /// quarantine is journaled: a follower that applies the event before the
    /// write's still holds the right key.
    #[test]
    fn a_quarantine_reports_the_tag_of_its_generation_across_a_write() {
        let core = Core::for_tests();
        let id = ExtentId(4);
        let tag = |g: u64| Tag::new(format!("4@{g}").as_bytes()).expect("short");
        let faulted = test_support::commit(&core, id, 1, tag(1));
        let mut op = RepairOp::new(faulted);
        match op.start(&core) {
            Step::Io(IoRequest::Journal(entries)) => {
                assert!(matches!(&entries[1], Entry::Put(r) if r.tag == tag(1)));
            }
            other => panic!("expected the quarantine's journal entries, got {other:?}"),
        }
        test_support::commit(&core, id, 2, tag(2));
        let _ = op.on_io(&core, IoResult::Done(Ok(())));
        let events = core.events.changes.since(0).expect("retained");
        let reported = (events.iter()).find_map(|e| match e {
            Event::Quarantined { record, tag, .. } => Some((record.generation(), *tag)),
            _ => None,
        });
        assert_eq!(reported, Some((1, tag(1))));
    }

    /// A quarantine that loses its race to a write still journals the bad
    /// mark of the location that failed every re-read (a reopen keeps it out
    /// of use), then answers `Raced`.
    #[test]
    fn a_quarantine_that_loses_its_race_still_journals_the_bad_mark() {
        let core = Core::for_tests();
        let id = ExtentId(4);
        let faulted = commit(&core, id, 1);
        commit(&core, id, 2);
        let mut op = RepairOp::new(faulted);
        let bad = faulted.location();
        match op.start(&core) {
            Step::Io(IoRequest::Journal(entries)) => {
                assert!(
                    matches!(&entries[..], [Entry::Bad(l)] if *l == bad),
                    "{entries:?}"
                );
            }
            other => panic!("expected the bad mark's journal entry, got {other:?}"),
        }
        assert!(core.allocator.is_bad(bad));
        assert!(matches!(
            op.on_io(&core, IoResult::Done(Ok(()))),
            Step::Done(Ok(RepairOutcome::Raced))
        ));
        // The same, with the journal refusing the mark (it failed): its
        // error, which says a reopen is needed, not a race.
        let mut op = RepairOp::new(faulted);
        assert!(matches!(op.start(&core), Step::Io(IoRequest::Journal(_))));
        let refused = Error::JournalFailed {
            cause: "EIO".into(),
        };
        match op.on_io(&core, IoResult::Done(Err(refused))) {
            Step::Done(Err(err)) => assert_eq!(err.code(), "FPRE036", "{err}"),
            other => panic!("expected the journal's error, got {other:?}"),
        }
    }
    /// A quarantine that meets a write or compaction of its extent merely
    /// begun (its mark bumped the version; the faulted bytes are still the
    /// record's) goes on top of it instead of giving up as a race.
    #[test]
    fn a_quarantine_goes_on_top_of_a_write_or_compaction_merely_begun() {
        for begin in [Change::BeginWrite, Change::BeginCompact] {
            let core = Core::for_tests();
            let id = ExtentId(6);
            let faulted = commit(&core, id, 1);
            let begun = (core.table)
                .transition(id, faulted.version(), begin)
                .expect("begun");
            let mut op = RepairOp::new(faulted);
            match op.start(&core) {
                Step::Io(IoRequest::Journal(entries)) => assert!(
                    matches!(&entries[..], [Entry::Bad(_), Entry::Put(_)]),
                    "{begin:?}: {entries:?}"
                ),
                other => panic!("{begin:?}: expected the quarantine's entries, got {other:?}"),
            }
            assert!(op.quarantined_here(), "{begin:?}");
            let now = core.table.snapshot(id).expect("record");
            assert_eq!(now.state(), State::Quarantined, "{begin:?}");
            assert_eq!(now.write_pending(), begun.write_pending(), "{begin:?}");
            assert_eq!(now.location(), faulted.location(), "{begin:?}");
        }
    }

    /// A kept copy is served for its own generation only, never replaced by
    /// an older one, and dropped once a later generation asks or its extent
    /// is written or deleted (`forget`).
    #[test]
    fn a_kept_copy_serves_its_generation_only_and_goes_when_the_record_moves_on() {
        let core = Core::for_tests();
        let id = ExtentId(5);
        let g1 = commit(&core, id, 1);
        let bytes = |g: u64| test_support::value(id, g);
        let stays = || false;
        core.rescued.keep(id, 1, bytes(1), stays);
        assert_eq!(core.rescued.copy_of(&g1).as_deref(), Some(&bytes(1)[..]));
        let g2 = commit(&core, id, 2);
        core.rescued.keep(id, 2, bytes(2), stays);
        core.rescued.keep(id, 1, bytes(1), stays);
        assert_eq!(core.rescued.copy_of(&g1), None, "not the older one");
        assert_eq!(core.rescued.copy_of(&g2).as_deref(), Some(&bytes(2)[..]));
        let g3 = commit(&core, id, 3);
        assert_eq!(core.rescued.copy_of(&g3), None, "a stale copy is dropped");
        assert_eq!(core.rescued.copy_of(&g2), None);
        core.rescued.keep(id, 3, bytes(3), stays);
        core.rescued.forget(id);
        assert_eq!(core.rescued.copy_of(&g3), None, "forgotten");
    }

    /// A repair that keeps its copy after a write committed on top of the
    /// quarantine it looked at (and after that write's `forget` found nothing)
    /// drops it again: the copy would otherwise stay until the extent's next
    /// commit, a copy of a generation no record holds.
    #[test]
    fn a_copy_kept_after_a_commit_it_raced_is_dropped() {
        let core = Core::for_tests();
        let id = ExtentId(6);
        let bytes = |g: u64| test_support::value(id, g);
        let g1 = commit(&core, id, 1);
        // The write commits and forgets first; the repair then keeps g1.
        let g2 = commit(&core, id, 2);
        core.rescued.forget(id);
        core.rescued
            .keep(id, 1, bytes(1), || super::committed_since(&core, id, &g1));
        assert!(core.rescued.kept.lock().is_empty(), "nothing kept");
        // The record still the one looked at: kept.
        core.rescued
            .keep(id, 2, bytes(2), || super::committed_since(&core, id, &g2));
        assert_eq!(core.rescued.copy_of(&g2).as_deref(), Some(&bytes(2)[..]));
    }
}
