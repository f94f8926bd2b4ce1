//! Deferred reclamation of retired locations.
//!
//! A location unreferenced by a commit (the old location of a write, compaction or
//! remap) may still be being read by a reader that took its snapshot before the
//! commit. It returns to the free pool only after every such reader has finished.
//!
//! The scheme is a two-counter grace period (as in SRCU): a global epoch, and one
//! reader count per epoch parity. A reader *pins* (counts itself in the current
//! parity) before taking its snapshot and *unpins* after its I/O. A location retired
//! at epoch `r` is freed once the epoch reaches `r + 2`; advancing from `e` to `e+1`
//! needs no reader counted in parity `(e+1) & 1`.
//!
//! # Orderings
//!
//! Every epoch and counter operation is `SeqCst`, and two `SeqCst` fences close the
//! gap between the record table and the epoch:
//! * *X*, in [`Reclaimer::retire`], after the commit that unreferenced the location
//!   and before the epoch load that tags it;
//! * *Y*, in [`Reclaimer::pin`], after the reader's confirming epoch load and before
//!   its snapshot.
//!
//! A reader whose confirming load saw epoch `c` blocks the advance past `c + 1`, so
//! while it is pinned only locations tagged `r ≤ c - 1` are freed. Its load saw a
//! value stored after the retirer's tagging load (which saw `r < c`), so X precedes
//! Y in the single total order and the reader's snapshot sees the commit: it never
//! reads a location freed under it. The loom model `reclamation_races_read` checks
//! this.

use crate::record::Location;
use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering::SeqCst, fence_seq_cst};
use std::collections::VecDeque;

/// Fast-path pin attempts before pinning under the reclaimer's lock (which stops the
/// epoch from moving, so that attempt always succeeds).
const PIN_ATTEMPTS: u32 = 8;

/// A reader's registration; hand it back to [`Reclaimer::unpin`].
#[derive(Debug)]
#[must_use = "an unpinned reader blocks reclamation forever"]
pub(crate) struct Pin {
    parity: usize,
}

/// The grace-period tracker and the queue of retired locations.
#[derive(Debug)]
pub(crate) struct Reclaimer {
    epoch: AtomicU64,
    active: [AtomicUsize; 2],
    retired: Mutex<VecDeque<(u64, Location)>>,
}

impl Reclaimer {
    pub(crate) fn new() -> Self {
        Reclaimer {
            epoch: AtomicU64::new(0),
            active: [AtomicUsize::new(0), AtomicUsize::new(0)],
            retired: Mutex::new(VecDeque::new()),
        }
    }

    /// Registers a reader. Call before taking the snapshot whose location it reads.
    pub(crate) fn pin(&self) -> Pin {
        for _ in 0..PIN_ATTEMPTS {
            if let Some(pin) = self.try_pin() {
                return pin;
            }
        }
        // The epoch only moves under `retired`'s lock, so this attempt succeeds.
        let _hold = self.retired.lock();
        self.try_pin()
            .expect("the epoch cannot move while the lock is held")
    }

    fn try_pin(&self) -> Option<Pin> {
        let seen = self.epoch.load(SeqCst);
        let parity = (seen & 1) as usize;
        self.active[parity].fetch_add(1, SeqCst);
        let confirm = self.epoch.load(SeqCst);
        if (confirm & 1) as usize != parity {
            // An odd number of advances slipped in: our count is in the wrong parity.
            self.active[parity].fetch_sub(1, SeqCst);
            return None;
        }
        fence_seq_cst(); // Y: pairs with X in `retire` (see module docs).
        Some(Pin { parity })
    }

    /// Ends a reader's registration.
    pub(crate) fn unpin(&self, pin: Pin) {
        // SeqCst: the advancer's check of this counter must see the decrement only
        // after the reader's I/O, and the advance is ordered with it.
        let before = self.active[pin.parity].fetch_sub(1, SeqCst);
        debug_assert!(before > 0, "unpin without a pin");
    }

    /// Queues `location` (no longer referenced by any committed record) for reuse and
    /// frees whatever has become safe, calling `free` for each.
    pub(crate) fn retire(&self, location: Location, free: impl FnMut(Location)) {
        fence_seq_cst(); // X: the unreferencing commit precedes the tagging load.
        let tag = self.epoch.load(SeqCst);
        self.retired.lock().push_back((tag, location));
        self.collect(free);
    }

    /// Advances the epoch as far as readers allow (at most twice) and frees every
    /// location whose grace period has passed. Bounded: two advances, one pass.
    pub(crate) fn collect(&self, mut free: impl FnMut(Location)) {
        let mut retired = self.retired.lock();
        for _ in 0..2 {
            let epoch = self.epoch.load(SeqCst);
            if self.active[((epoch + 1) & 1) as usize].load(SeqCst) != 0 {
                break;
            }
            // Only this lock's holder stores the epoch.
            self.epoch.store(epoch + 1, SeqCst);
        }
        let epoch = self.epoch.load(SeqCst);
        while let Some(&(tag, location)) = retired.front() {
            if tag + 2 > epoch {
                break;
            }
            retired.pop_front();
            free(location);
        }
    }

    /// Locations waiting for their grace period.
    pub(crate) fn pending(&self) -> usize {
        self.retired.lock().len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn reclaimer_frees_only_after_the_reader_unpins() {
        let r = Reclaimer::new();
        let pin = r.pin();
        let mut freed = vec![];
        r.retire(Location::new(0, 4096, 1), |l| freed.push(l));
        r.collect(|l| freed.push(l));
        r.collect(|l| freed.push(l));
        assert!(freed.is_empty(), "a pinned reader may still read it");
        r.unpin(pin);
        r.collect(|l| freed.push(l));
        r.collect(|l| freed.push(l));
        assert_eq!(freed, vec![Location::new(0, 4096, 1)]);
        assert_eq!(r.pending(), 0);
    }
}
