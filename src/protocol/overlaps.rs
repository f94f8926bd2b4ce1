//! [`Overlaps`]: the overlapped writes in flight per device, and the markers of those that finished.

use crate::journal::Entry;
use crate::record::{ExtentId, Location};
use std::collections::HashMap;

/// The overlapped writes of a store (see "Overlapped data syncs" in `journal`).
///
/// * Per device, the overlapped writes whose data's sync has not finished: a
///   checkpoint syncs those devices before it replaces the journals, as its
///   image holds their records as plain proposals. A device where such a sync
///   failed stays in the set until a reopen: an image taken before the failure
///   may hold that write's proposal, and the device's next sync fails too (the
///   sync book), so no checkpoint replaces the journals meanwhile.
/// * The [`Entry::Synced`] markers of overlapped writes that finished, for the
///   next append to carry. None is dropped (a dropped marker would leave a
///   fault of that write's data free to pass for a torn write at a later
///   recovery). Bounded by the overlapped writes in flight: every append takes
///   them all, and a write appends its record before its data's sync can end,
///   so the markers left after an append are those of writes already in
///   flight at it (batches sync their data before they journal, and leave
///   none). The [`Entry::Bad`] marks of locations whose write failed
///   ([`Core::mark_bad_later`](super::Core::mark_bad_later)) go the same way:
///   bounded by the writes that failed since the last append, one each.
#[derive(Debug, Default)]
pub(crate) struct Overlaps {
    // parking_lot's even under loom: no loom model runs an overlapped write.
    inner: parking_lot::Mutex<OverlapsInner>,
    /// Whether `markers` may hold any: read without the lock by every journal
    /// append ([`with_markers`](Self::with_markers)), so that appends of a store
    /// with no overlapped writes take no lock for them.
    any_markers: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct OverlapsInner {
    in_flight: HashMap<u16, u32>,
    failed: std::collections::BTreeSet<u16>,
    markers: Vec<Entry>,
    /// Per marker not yet durable, the location of the record its write
    /// replaced ([`carried`](Overlaps::carried)). Bounded by the markers
    /// waiting plus those a failed append lost (until the next open).
    behind: HashMap<(ExtentId, u64), Location>,
}

impl Overlaps {
    /// An overlapped write on `device` hands its record to the journal.
    pub(crate) fn begin(&self, device: u16) {
        *self.inner.lock().in_flight.entry(device).or_default() += 1;
    }

    /// Its data's sync on `device` finished, successfully if `ok`.
    pub(crate) fn end(&self, device: u16, ok: bool) {
        let mut g = self.inner.lock();
        if !ok {
            g.failed.insert(device);
        }
        if let Some(n) = g.in_flight.get_mut(&device) {
            *n -= 1;
            if *n == 0 {
                g.in_flight.remove(&device);
            }
        }
    }

    /// Whether an overlapped write is in flight: handed to the journal, and
    /// not yet past its commit and its marker (`WriteOp::overlap_done` ends
    /// it last). `close` waits for none before its marker's group, or a
    /// write answered after it would leave its marker to no append.
    pub(crate) fn settling(&self) -> bool {
        !self.inner.lock().in_flight.is_empty()
    }

    /// Devices with overlapped writes whose data's sync has not finished, and
    /// (`failed`) those where one failed.
    pub(crate) fn devices(&self, failed: bool) -> Vec<u16> {
        let g = self.inner.lock();
        let failed = g.failed.iter().filter(|_| failed);
        g.in_flight.keys().chain(failed).copied().collect()
    }

    /// A write committed `extent`'s record at `version`, unreferencing `old`:
    /// the location to retire now. If `marker` (an overlapped write, whose
    /// data is durable), its marker goes to the next append, and `old` waits
    /// for it ([`carried`](Self::carried)): none to retire now. Overlapped
    /// writes exist only with a journal, where a listener's panic keeps no
    /// location (`Core::report_then_retire`).
    pub(crate) fn synced(
        &self,
        marker: bool,
        extent: ExtentId,
        version: u64,
        old: Option<Location>,
    ) -> Option<Location> {
        if !marker {
            return old;
        }
        let mut g = self.inner.lock();
        g.markers.push(Entry::Synced { extent, version });
        if let Some(old) = old {
            g.behind.insert((extent, version), old);
        }
        // Relaxed: a hint; an append that misses it leaves the marker to the
        // next one (or the flusher), which only delays it.
        self.any_markers
            .store(true, std::sync::atomic::Ordering::Relaxed);
        None
    }

    /// A location whose write failed is bad: the mark for the next append.
    pub(crate) fn carry(&self, mark: Entry) {
        self.inner.lock().markers.push(mark);
        // Relaxed: as in `synced`.
        self.any_markers
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether markers wait for an append.
    pub(crate) fn markers_pending(&self) -> bool {
        // Relaxed: as in `synced`.
        self.any_markers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The locations waiting for the [`Entry::Synced`] markers among
    /// `entries`, which an append just made durable: to retire now.
    ///
    /// Until its marker is durable, a recovery may find an overlapped write's
    /// data damaged and restore the record it replaced (see "Overlapped data
    /// syncs" in `journal`), so that record's location must still hold its
    /// bytes: freed at the write's commit, it could be handed to another
    /// write, or cut off the device file by `reclaim_space`, and the restored
    /// record would name another extent's bytes, share its location with
    /// another record, or lie past the file's end. A marker that no append
    /// makes durable (the journal failed, or `close` refused the append that
    /// took it) leaves its location in use until the next open, which
    /// recovers it: safe, and bounded by those failures.
    pub(crate) fn carried(&self, entries: &[Entry]) -> Vec<Location> {
        // Markers lead an append's entries (`with_markers`): one without
        // takes no lock.
        let marker = |e: &&Entry| matches!(e, Entry::Synced { .. } | Entry::Bad(..));
        if !(entries.iter().take_while(marker)).any(|e| matches!(e, Entry::Synced { .. })) {
            return Vec::new();
        }
        let mut g = self.inner.lock();
        if g.behind.is_empty() {
            return Vec::new();
        }
        (entries.iter())
            .filter_map(|e| match e {
                Entry::Synced { extent, version } => g.behind.remove(&(*extent, *version)),
                _ => None,
            })
            .collect()
    }

    /// `entries` behind the markers waiting: every append carries them, so a
    /// marker is durable with the next one after its write (a batch marker and
    /// its records stay together behind them).
    pub(crate) fn with_markers(&self, entries: Vec<Entry>) -> Vec<Entry> {
        if !self.markers_pending() {
            return entries;
        }
        let mut g = self.inner.lock();
        // Relaxed: under the lock that `synced` sets it under.
        self.any_markers
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let mut all = std::mem::take(&mut g.markers);
        all.extend(entries);
        all
    }
}
