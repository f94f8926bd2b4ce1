//! Inline writes whose bytes no sync of their device has covered yet.
//!
//! An inline write (see `journal`'s "Inline writes") is durable in the journal
//! while its data sits in the page cache at its location. A failed sync of that
//! device may drop those pages (Linux may, after a failed writeback): the bytes
//! stay durable in the journal, and a reopen writes them back, but until then
//! reads, compaction and verification of the extent would find the old bytes, and
//! the verifier would call a failed writeback a damaged extent. So the store keeps
//! each such write's bytes (shared with the caller's buffer, not copied) until a
//! sync of its device that started after it succeeds, and after a failed sync
//! writes them to their locations again ([`WriteBack::rewrite`]), as PostgreSQL
//! keeps its WAL to redo a failed checkpoint.
//!
//! Bounded by the bytes of inline writes since the last successful sync of their
//! device: every checkpoint syncs every device, so at most about one journal's
//! worth ([`journal_max_bytes`](crate::store::StoreConfigBuilder::journal_max_bytes)),
//! plus the writes of one rotation.

use crate::bytes::Bytes;
use crate::record::Location;
use std::collections::{BTreeMap, HashMap};
// parking_lot's even under loom: the set orders nothing the loom models check
// (every location it names is owned by its write until the allocator gets it
// back, see `forget`), and a loom lock on every free would multiply their
// interleavings. The emulator and the real-file tests cover it.
use parking_lot::Mutex;

/// Stamps [`WriteBack::synced`] drops per hold of the lock: about 0.3 ms of
/// work that an inline write may wait for.
const STAMPS_PER_LOCK: usize = 1024;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct WriteBack {
    inner: Mutex<Inner>,
}

impl Default for WriteBack {
    fn default() -> Self {
        WriteBack {
            inner: Mutex::new(Inner::default()),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Stamps entries in insertion order.
    next: u64,
    /// Per device: the unsynced writes by stamp.
    devices: HashMap<u16, BTreeMap<u64, (Location, Bytes)>>,
    /// The stamp of each location held. A B-tree, not a hash map: a hash
    /// map's growth rehashes every entry inside the insert that crosses its
    /// load bound, and an inline write waited 60–150 ms for the rehash of
    /// the 0.4–0.9 M writes a rotation of 10 M extents holds
    /// (`benches/scale.rs`); a B-tree grows a node at a time.
    stamps: BTreeMap<Location, u64>,
}

impl WriteBack {
    /// `bytes` were written at `location` (before this call) and will be
    /// durable only in the journal until a sync of the device covers them.
    pub(crate) fn insert(&self, location: Location, bytes: Bytes) {
        let mut g = self.inner.lock();
        let stamp = g.next;
        g.next += 1;
        if let Some(old) = g.stamps.insert(location, stamp) {
            remove_stamp(&mut g, location.device, old);
        }
        (g.devices.entry(location.device).or_default()).insert(stamp, (location, bytes));
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
    /// which is right, and only [`len`](Self::len) counts it meanwhile.
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
            for (stamp, (location, _)) in done.by_ref().take(STAMPS_PER_LOCK) {
                // Only this write's stamp: a later write of the location holds it now.
                if g.stamps.get(&location) == Some(&stamp) {
                    g.stamps.remove(&location);
                }
            }
        }
    }

    /// After a failed sync of `device`: writes every held write of the device
    /// again with `write`, under the lock, so that no location is freed (and
    /// reused) meanwhile ([`forget`](Self::forget) waits). Returns how many.
    pub(crate) fn rewrite(&self, device: u16, mut write: impl FnMut(Location, &Bytes)) -> u64 {
        let g = self.inner.lock();
        let Some(held) = g.devices.get(&device) else {
            return 0;
        };
        for (location, bytes) in held.values() {
            write(*location, bytes);
        }
        held.len() as u64
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

fn remove_stamp(g: &mut Inner, device: u16, stamp: u64) {
    if let Some(held) = g.devices.get_mut(&device) {
        held.remove(&stamp);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn at(device: u16, offset: u64) -> Location {
        Location::new(device, offset, 16)
    }

    /// The bytes of generation `generation` of extent `extent`.
    fn value(extent: u64, generation: u64) -> Vec<u8> {
        [extent.to_le_bytes(), generation.to_le_bytes()].concat()
    }

    fn held(w: &WriteBack, device: u16) -> Vec<(Location, Vec<u8>)> {
        let mut out = Vec::new();
        w.rewrite(device, |l, b| out.push((l, b.to_vec())));
        out
    }

    #[test]
    fn a_sync_drops_only_what_was_written_before_it_started() {
        let w = WriteBack::default();
        w.insert(at(0, 0), Bytes::from(value(1, 1)));
        w.insert(at(1, 0), Bytes::from(value(2, 1)));
        let mark = w.mark();
        w.insert(at(0, 16), Bytes::from(value(3, 1)));
        w.synced(0, mark);
        assert_eq!(held(&w, 0), vec![(at(0, 16), value(3, 1))]);
        assert_eq!(held(&w, 1), vec![(at(1, 0), value(2, 1))], "another device");
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn a_freed_location_is_never_written_again_and_a_rewrite_replaces() {
        let w = WriteBack::default();
        w.insert(at(0, 0), Bytes::from(value(1, 1)));
        w.insert(at(0, 0), Bytes::from(value(1, 2)));
        assert_eq!(held(&w, 0), vec![(at(0, 0), value(1, 2))]);
        w.forget(at(0, 0));
        assert!(held(&w, 0).is_empty());
        assert_eq!(w.len(), 0);
    }
}
