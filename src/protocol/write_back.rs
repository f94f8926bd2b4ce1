//! Inline writes whose bytes no sync of their device has covered yet.
//!
//! An inline write (see `journal`'s "Inline writes") is durable in the journal
//! while its data sits in the page cache at its location. A failed sync of that
//! device may drop those pages (Linux may, after a failed writeback): the bytes
//! stay durable in the journal, and a reopen writes them back, but until then
//! reads, compaction and verification of the extent would find the old bytes, and
//! the verifier would call a failed writeback a damaged extent. So the store
//! keeps track of each such write until a sync of its device that started after
//! it succeeds, and after a failed sync writes its bytes to their location again
//! ([`WriteBack::rewrite`]), as PostgreSQL keeps its WAL to redo a failed
//! checkpoint. The kernel drops the pages when the writeback fails, before the
//! failed sync returns: a verifier that finds the bytes wrong meanwhile writes
//! them again itself ([`WriteBack::rewrite_at`]) before it retries.
//!
//! The bytes come from the write's own handle while the write is in flight
//! (its group commit may not be durable yet), and from its journal record once
//! the write has returned: the set keeps only a weak handle. Keeping the bytes
//! themselves held every inline write's copy until the next checkpoint, up to a
//! journal's worth of memory, each copy memory never used before: 8 writers at
//! 4 KiB were 1.59–1.65× the data-only baseline with the copies let go against
//! 1.49–1.52× holding them (BENCHMARKS.md, "Inline copies read back from the
//! journal").
//!
//! Bounded by the inline writes since the last successful sync of their device:
//! every checkpoint syncs every device, so at most about one journal's worth
//! ([`journal_max_bytes`](crate::store::StoreConfigBuilder::journal_max_bytes))
//! of writes, plus the writes of one rotation, at about 100 bytes each.

use crate::bytes::{Bytes, WeakBytes};
use crate::error::Error;
pub(crate) use crate::journal::Proposal;
use crate::record::Location;
use std::collections::{BTreeMap, BTreeSet, HashMap};
// parking_lot's even under loom: the set orders nothing the loom models check
// (every location it names is owned by its write until the allocator gets it
// back, see `forget`), and a loom lock on every free would multiply their
// interleavings. The emulator and the real-file tests cover it.
use parking_lot::Mutex;

/// Stamps [`WriteBack::synced`] drops per hold of the lock: about 0.3 ms of
/// work that an inline write may wait for.
const STAMPS_PER_LOCK: usize = 1024;

/// What [`WriteBack::rewrite`] asks the journal for: the bytes of each
/// proposal's record, with the location it names.
pub(crate) type ReadBack<'a> =
    &'a mut dyn FnMut(&BTreeSet<Proposal>) -> HashMap<Proposal, (Location, Bytes)>;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct WriteBack {
    inner: Mutex<Inner>,
}

/// One write held.
#[derive(Debug)]
struct Held {
    location: Location,
    proposal: Proposal,
    /// The write's bytes while the write holds them.
    bytes: WeakBytes,
}

#[derive(Debug, Default)]
struct Inner {
    /// Stamps entries in insertion order.
    next: u64,
    /// Per device: the unsynced writes by stamp.
    devices: HashMap<u16, BTreeMap<u64, Held>>,
    /// The stamp of each location held. A B-tree, not a hash map: a hash
    /// map's growth rehashes every entry inside the insert that crosses its
    /// load bound, and an inline write waited 60–150 ms for the rehash of
    /// the 0.4–0.9 M writes a rotation of 10 M extents holds
    /// (`benches/scale.rs`); a B-tree grows a node at a time.
    stamps: BTreeMap<Location, u64>,
}

impl WriteBack {
    /// `bytes` were written at `location` (before this call) by `proposal`,
    /// whose journal record carries them too, and will be durable only there
    /// until a sync of the device covers them.
    pub(crate) fn insert(&self, location: Location, proposal: Proposal, bytes: &Bytes) {
        let held = Held {
            location,
            proposal,
            bytes: bytes.downgrade(),
        };
        let mut g = self.inner.lock();
        let stamp = g.next;
        g.next += 1;
        if let Some(old) = g.stamps.insert(location, stamp) {
            remove_stamp(&mut g, location.device, old);
        }
        (g.devices.entry(location.device).or_default()).insert(stamp, held);
    }

    /// `location` is about to return to the allocator: its bytes must never be
    /// written there again.
    pub(crate) fn forget(&self, location: Location) {
        let mut g = self.inner.lock();
        if let Some(stamp) = g.stamps.remove(&location) {
            remove_stamp(&mut g, location.device, stamp);
        }
    }

    /// Taken before a device sync starts: [`synced`](Self::synced) then drops
    /// what was inserted before it.
    pub(crate) fn mark(&self) -> u64 {
        self.inner.lock().next
    }

    /// A sync of `device` that started after [`mark`](Self::mark) returned
    /// `mark` succeeded (and the sync book trusted it): every write inserted
    /// before is durable at its location.
    ///
    /// The writes are taken out under the lock at once, their stamps dropped
    /// [`STAMPS_PER_LOCK`] at a time and their bytes freed without the lock:
    /// a checkpoint's sync covers every inline write of a rotation (1.3 M at
    /// 10 M extents in `benches/scale.rs`), and an inline write inserting meanwhile
    /// waited for all of them (370 ms). A stamp left a moment longer names a
    /// write no longer held: [`insert`](Self::insert) and
    /// [`forget`](Self::forget) then remove nothing from the device's writes,
    /// which is right, [`holds`](Self::holds) and
    /// [`rewrite_at`](Self::rewrite_at) look the write up there too, and only
    /// [`len`](Self::len) counts it meanwhile.
    pub(crate) fn synced(&self, device: u16, mark: u64) {
        let done = {
            let mut g = self.inner.lock();
            let Some(held) = g.devices.get_mut(&device) else {
                return;
            };
            let kept = held.split_off(&mark);
            std::mem::replace(held, kept)
        };
        let mut done = done.into_iter().peekable();
        // Bounded: every pass drops up to STAMPS_PER_LOCK stamps of a finite map.
        while done.peek().is_some() {
            let mut g = self.inner.lock();
            for (stamp, held) in done.by_ref().take(STAMPS_PER_LOCK) {
                // Only this write's stamp: a later write of the location holds it now.
                if g.stamps.get(&held.location) == Some(&stamp) {
                    g.stamps.remove(&held.location);
                }
            }
        }
    }

    /// Writes every held write of `device` again with `write` (after a failed
    /// sync of the device, to its location; for a backup, into the copy of the
    /// device file). Each is written under the lock, so that its location is
    /// not freed (and reused) meanwhile ([`forget`](Self::forget) waits). The
    /// bytes of a write that has returned come from its journal record,
    /// through `read_back` (called once, for all of them, without the lock:
    /// every inline write and every free would wait for a scan of the journal
    /// files); such a write is written only if it still holds its location
    /// then, and not if the journal does not hold it (a write that failed).
    /// Returns how many were written from the writes' own bytes, how many
    /// from the journal, and the locations of those still held that no
    /// journal read showed (their bytes are not written: a backup fails if
    /// its image references one).
    pub(crate) fn rewrite(
        &self,
        device: u16,
        write: impl FnMut(Location, &Bytes),
        read_back: ReadBack<'_>,
    ) -> (u64, u64, Vec<Location>) {
        self.rewrite_picked(
            |g| {
                (g.devices.get(&device).into_iter())
                    .flat_map(|held| held.iter().map(|(&stamp, h)| (stamp, h.location)))
                    .collect()
            },
            write,
            read_back,
        )
    }

    /// Whether an inline write held at `location` waits for a sync of its
    /// device (its only durable copy is its journal record).
    pub(crate) fn holds(&self, location: Location) -> bool {
        held_stamp(&self.inner.lock(), location).is_some()
    }

    /// Whether a read of `location` that failed with `err` may be mended by
    /// writing the bytes again ([`rewrite_at`](Self::rewrite_at)): the bytes
    /// read are not the write's (other bytes, or fewer: a dropped page past
    /// what any sync wrote) where a held inline write lies. A read the device
    /// failed is not: it is retried as any.
    pub(crate) fn mends(&self, location: Location, err: &Error) -> bool {
        matches!(
            err,
            Error::ChecksumMismatch { .. } | Error::ShortRead { .. }
        ) && self.holds(location)
    }

    /// Writes the inline write held at `location` again, as
    /// [`rewrite`](Self::rewrite) does for a whole device: a reader that found
    /// its bytes wrong (a failed device sync dropped their pages, and the
    /// device's rewrite has not reached them yet) puts them back itself
    /// instead of taking a failed writeback for a damaged extent. Returns how
    /// many were written from the write's own bytes and from the journal (at
    /// most one).
    ///
    /// The journal is read without the lock (every inline write and every
    /// free waits for it, and a read-back scans journal files), and the bytes
    /// are written under it only if the same write still holds the location:
    /// a location freed meanwhile may be another write's.
    pub(crate) fn rewrite_at(
        &self,
        location: Location,
        write: impl FnMut(Location, &Bytes),
        read_back: ReadBack<'_>,
    ) -> (u64, u64) {
        let (own, journaled, _missed) = self.rewrite_picked(
            |g| {
                held_stamp(g, location)
                    .map(|(stamp, _)| (stamp, location))
                    .into_iter()
                    .collect()
            },
            write,
            read_back,
        );
        // A write the journal no longer shows: the read that asked fails as
        // it would have (the extent's last good copy is the ladder's to find).
        (own, journaled)
    }

    /// What [`rewrite`](Self::rewrite) and [`rewrite_at`](Self::rewrite_at)
    /// share: the held writes `pick` names (stamp and location, under the
    /// lock) are written from their own bytes at once; the rest are read back
    /// from the journal without the lock and written under it again, each only
    /// if the same write still holds its location.
    fn rewrite_picked(
        &self,
        pick: impl FnOnce(&Inner) -> Vec<(u64, Location)>,
        mut write: impl FnMut(Location, &Bytes),
        read_back: ReadBack<'_>,
    ) -> (u64, u64, Vec<Location>) {
        let mut own = 0;
        // (stamp, location, proposal) of each write that let its bytes go.
        let mut gone = Vec::new();
        {
            let g = self.inner.lock();
            for (stamp, location) in pick(&g) {
                let Some((_, h)) = held_stamp(&g, location).filter(|(s, _)| *s == stamp) else {
                    continue;
                };
                match h.bytes.upgrade() {
                    Some(bytes) => {
                        write(location, &bytes);
                        own += 1;
                    }
                    None => gone.push((stamp, location, h.proposal)),
                }
            }
        }
        if gone.is_empty() {
            return (own, 0, Vec::new());
        }
        let found = read_back(&gone.iter().map(|&(_, _, p)| p).collect());
        let g = self.inner.lock();
        let (mut journaled, mut missed) = (0, Vec::new());
        for (stamp, location, proposal) in gone {
            let still_held = held_stamp(&g, location).is_some_and(|(s, _)| s == stamp);
            match found.get(&proposal) {
                Some((at, bytes)) if *at == location && still_held => {
                    write(location, bytes);
                    journaled += 1;
                }
                None if still_held => missed.push(location),
                _ => {}
            }
        }
        (own, journaled, missed)
    }

    /// The devices holding inline writes: the ones a write-back must sync (every
    /// other write synced its data before it committed).
    pub(crate) fn devices(&self) -> Vec<u16> {
        let g = self.inner.lock();
        let mut devices: Vec<u16> = (g.devices.iter())
            .filter(|(_, held)| !held.is_empty())
            .map(|(d, _)| *d)
            .collect();
        devices.sort_unstable();
        devices
    }

    /// Writes held, over every device.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().stamps.len()
    }
}

/// The stamp and write holding `location`, if a write does: a stamp
/// [`WriteBack::synced`] has not dropped yet names a write no longer held.
fn held_stamp(g: &Inner, location: Location) -> Option<(u64, &Held)> {
    let stamp = *g.stamps.get(&location)?;
    let held = g.devices.get(&location.device)?.get(&stamp)?;
    Some((stamp, held))
}

fn remove_stamp(g: &mut Inner, device: u16, stamp: u64) {
    if let Some(held) = g.devices.get_mut(&device) {
        held.remove(&stamp);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::record::ExtentId;

    fn at(device: u16, offset: u64) -> Location {
        Location::new(device, offset, 16)
    }

    /// The bytes of generation `generation` of extent `extent`.
    fn value(extent: u64, generation: u64) -> Bytes {
        Bytes::from([extent.to_le_bytes(), generation.to_le_bytes()].concat())
    }

    fn proposal(extent: u64, generation: u64) -> Proposal {
        (ExtentId(extent), generation)
    }

    /// What a rewrite of `device` writes, reading back from `journal`.
    fn rewritten(
        w: &WriteBack,
        device: u16,
        journal: &HashMap<Proposal, (Location, Bytes)>,
    ) -> Vec<(Location, Bytes)> {
        let mut out = Vec::new();
        let mut read_back = |wanted: &BTreeSet<Proposal>| {
            (journal.iter())
                .filter(|(p, _)| wanted.contains(p))
                .map(|(p, v)| (*p, v.clone()))
                .collect()
        };
        let (own, journaled, _) =
            w.rewrite(device, |l, b| out.push((l, b.clone())), &mut read_back);
        assert_eq!((own + journaled) as usize, out.len());
        out.sort_by_key(|(l, _)| *l);
        out
    }

    #[test]
    fn a_sync_drops_only_what_was_written_before_it_started() {
        let w = WriteBack::default();
        let held = [value(1, 1), value(2, 1), value(3, 1)];
        w.insert(at(0, 0), proposal(1, 1), &held[0]);
        w.insert(at(1, 0), proposal(2, 1), &held[1]);
        let mark = w.mark();
        w.insert(at(0, 16), proposal(3, 1), &held[2]);
        w.synced(0, mark);
        let none = HashMap::new();
        assert_eq!(rewritten(&w, 0, &none), vec![(at(0, 16), value(3, 1))]);
        assert_eq!(
            rewritten(&w, 1, &none),
            vec![(at(1, 0), value(2, 1))],
            "another device"
        );
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn a_freed_location_is_never_written_again_and_a_rewrite_replaces() {
        let w = WriteBack::default();
        let held = [value(1, 1), value(1, 2)];
        w.insert(at(0, 0), proposal(1, 1), &held[0]);
        w.insert(at(0, 0), proposal(1, 2), &held[1]);
        let none = HashMap::new();
        assert_eq!(rewritten(&w, 0, &none), vec![(at(0, 0), value(1, 2))]);
        w.forget(at(0, 0));
        assert!(rewritten(&w, 0, &none).is_empty());
        assert_eq!(w.len(), 0);
    }

    /// A write that returned let its bytes go: its journal record gives them,
    /// for its own proposal and location only.
    #[test]
    fn a_returned_writes_bytes_come_from_its_journal_record() {
        let w = WriteBack::default();
        // Each value is dropped as the write that held it returns.
        w.insert(at(0, 0), proposal(1, 1), &value(1, 1));
        w.insert(at(0, 16), proposal(2, 3), &value(2, 3));
        w.insert(at(0, 32), proposal(3, 1), &value(3, 1));
        w.insert(at(0, 48), proposal(4, 1), &value(4, 1));
        let journal = HashMap::from([
            (proposal(1, 1), (at(0, 0), value(1, 1))),
            (proposal(2, 3), (at(0, 16), value(2, 3))),
            // Another proposal of extent 3 than the one held.
            (proposal(3, 2), (at(0, 32), value(3, 2))),
            // The held proposal, at another location.
            (proposal(4, 1), (at(0, 64), value(4, 1))),
        ]);
        assert_eq!(
            rewritten(&w, 0, &journal),
            vec![(at(0, 0), value(1, 1)), (at(0, 16), value(2, 3))]
        );
        // Extent 3's held proposal is in no journal: counted, for a backup to
        // fail on (extent 4's is, at another location: not this write's).
        let mut read_back = |wanted: &BTreeSet<Proposal>| {
            (journal.iter())
                .filter(|(p, _)| wanted.contains(p))
                .map(|(p, v)| (*p, v.clone()))
                .collect()
        };
        let (_, journaled, missed) = w.rewrite(0, |_, _| {}, &mut read_back);
        assert_eq!((journaled, missed), (2, vec![at(0, 32)]));
    }

    /// While a write holds its bytes, they are written without the journal
    /// (whose record of it may not be durable yet).
    #[test]
    fn a_write_in_flight_is_rewritten_from_its_own_bytes() {
        let w = WriteBack::default();
        let in_flight = value(1, 1);
        w.insert(at(0, 0), proposal(1, 1), &in_flight);
        let mut asked = false;
        let mut read_back = |_: &BTreeSet<Proposal>| {
            asked = true;
            HashMap::new()
        };
        let mut out = Vec::new();
        w.rewrite(0, |l, b| out.push((l, b.clone())), &mut read_back);
        assert_eq!(out, vec![(at(0, 0), value(1, 1))]);
        assert!(!asked, "the journal is read only for writes that returned");
    }

    /// What a reader's [`WriteBack::rewrite_at`] writes, with `during` run while
    /// the journal is read (the lock is not held then).
    fn rewritten_at(
        w: &WriteBack,
        location: Location,
        journal: &HashMap<Proposal, (Location, Bytes)>,
        during: impl Fn(&WriteBack),
    ) -> ((u64, u64), Vec<(Location, Bytes)>) {
        let mut out = Vec::new();
        let mut read_back = |wanted: &BTreeSet<Proposal>| {
            during(w);
            (journal.iter())
                .filter(|(p, _)| wanted.contains(p))
                .map(|(p, v)| (*p, v.clone()))
                .collect()
        };
        let counts = w.rewrite_at(location, |l, b| out.push((l, b.clone())), &mut read_back);
        (counts, out)
    }

    #[test]
    fn a_reader_rewrites_one_held_location_from_the_writes_bytes_or_its_record() {
        let w = WriteBack::default();
        let in_flight = value(1, 1);
        w.insert(at(0, 0), proposal(1, 1), &in_flight);
        w.insert(at(0, 16), proposal(2, 1), &value(2, 1));
        let journal = HashMap::from([(proposal(2, 1), (at(0, 16), value(2, 1)))]);
        let nothing = |_: &WriteBack| {};
        assert_eq!(
            rewritten_at(&w, at(0, 0), &journal, nothing),
            ((1, 0), vec![(at(0, 0), value(1, 1))])
        );
        assert_eq!(
            rewritten_at(&w, at(0, 16), &journal, nothing),
            ((0, 1), vec![(at(0, 16), value(2, 1))])
        );
        assert!(!w.holds(at(0, 32)));
        assert_eq!(
            rewritten_at(&w, at(0, 32), &journal, nothing),
            ((0, 0), vec![])
        );
        // Covered by a sync: no longer held, its stamp dropped or not.
        let mark = w.mark();
        w.synced(0, mark);
        assert!(!w.holds(at(0, 16)));
        assert_eq!(
            rewritten_at(&w, at(0, 16), &journal, nothing),
            ((0, 0), vec![])
        );
    }

    #[test]
    fn a_device_rewrite_skips_a_location_freed_while_the_journal_is_read() {
        let w = WriteBack::default();
        w.insert(at(0, 0), proposal(1, 1), &value(1, 1));
        w.insert(at(0, 16), proposal(2, 1), &value(2, 1));
        let journal = HashMap::from([
            (proposal(1, 1), (at(0, 0), value(1, 1))),
            (proposal(2, 1), (at(0, 16), value(2, 1))),
        ]);
        let reused = value(5, 1);
        let mut read_back = |wanted: &BTreeSet<Proposal>| {
            // The lock is not held: extent 1's location is freed and reused.
            w.forget(at(0, 0));
            w.insert(at(0, 0), proposal(5, 1), &reused);
            (journal.iter())
                .filter(|(p, _)| wanted.contains(p))
                .map(|(p, v)| (*p, v.clone()))
                .collect()
        };
        let mut out = Vec::new();
        let counts = w.rewrite(0, |l, b| out.push((l, b.clone())), &mut read_back);
        assert_eq!(
            counts,
            (0, 1, vec![]),
            "extent 1's write, freed, is not missed"
        );
        assert_eq!(out, vec![(at(0, 16), value(2, 1))]);
    }

    #[test]
    fn a_location_freed_while_the_journal_is_read_is_not_written() {
        let w = WriteBack::default();
        w.insert(at(0, 0), proposal(1, 1), &value(1, 1));
        let journal = HashMap::from([(proposal(1, 1), (at(0, 0), value(1, 1)))]);
        // Freed, and reused by another inline write, while the journal is read.
        let reused = value(5, 1);
        let (counts, out) = rewritten_at(&w, at(0, 0), &journal, |w| {
            w.forget(at(0, 0));
            w.insert(at(0, 0), proposal(5, 1), &reused);
        });
        assert_eq!((counts, out), ((0, 0), vec![]));
        // The new holder's bytes are what a rewrite of the location writes.
        assert_eq!(
            rewritten_at(&w, at(0, 0), &journal, |_| {}),
            ((1, 0), vec![(at(0, 0), value(5, 1))])
        );
    }
}
