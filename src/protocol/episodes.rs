//! One device error per fault, however many readers met it.
//!
//! A hot extent's failed load is handed to every reader waiting on it, and
//! each climbs the integrity ladder ([`VerifySession`](super::VerifySession))
//! at the same moment. Each verification would then charge the device for
//! the same fault: twelve readers of one flaky sector made twelve errors and
//! degraded the device (the policy's default is ten in ten minutes), the very
//! escalation of a race into a fault the crate exists to prevent. So a
//! verification does not charge a location that another verification of the
//! same extent charged since it began: the readers that met one fault
//! together charge it once. A verification that begins after a charge charges
//! again (a sector that keeps failing, for readers that keep coming, keeps
//! counting toward the health policy's threshold).
//!
//! Each session holds a [`Joined`] from its start until it ends (or is
//! dropped); an extent's entry goes when its last session leaves. Bounded by
//! the verifications in flight, and per extent by the locations charged (the
//! newest charge of each is kept).

use crate::record::{ExtentId, Location};
// parking_lot's even under loom: the set orders nothing the loom models
// check (it only decides whether a statistic is bumped), and a loom lock on
// every verification would multiply their interleavings.
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// The episodes in progress, by extent.
#[derive(Debug, Default)]
pub(crate) struct Episodes {
    running: Mutex<HashMap<ExtentId, Episode>>,
}

/// The verifications of one extent in progress.
#[derive(Debug, Default)]
struct Episode {
    /// Sessions joined and not left.
    sessions: u32,
    /// The newest charge of each location charged while sessions ran (one or
    /// two: the fault's, and a transient one's after a move), by stamp.
    charged: Vec<(Location, u64)>,
    /// The stamp of the next charge.
    next: u64,
}

/// A session's membership of its extent's episode; leaves on drop.
#[derive(Debug)]
pub(crate) struct Joined {
    episodes: Arc<Episodes>,
    id: ExtentId,
    /// The stamp of the first charge made after this session began.
    since: u64,
}

impl Episodes {
    /// A verification of `id` starts.
    pub(crate) fn join(self: &Arc<Self>, id: ExtentId) -> Joined {
        let mut running = self.running.lock();
        let episode = running.entry(id).or_default();
        episode.sessions += 1;
        Joined {
            episodes: Arc::clone(self),
            id,
            since: episode.next,
        }
    }
}

impl Episodes {
    /// Whether no episode is in progress.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn is_idle(&self) -> bool {
        self.running.lock().is_empty()
    }
}

impl Joined {
    /// Whether a fault found at `location` is to be charged to its device:
    /// no other session of the extent charged it since this one began.
    pub(crate) fn first_at(&self, location: Location) -> bool {
        let mut running = self.episodes.running.lock();
        let Some(episode) = running.get_mut(&self.id) else {
            // Unreachable while this membership lives: charge, as alone.
            return true;
        };
        let stamp = episode.next;
        match episode.charged.iter_mut().find(|(l, _)| *l == location) {
            Some((_, at)) if *at >= self.since => return false,
            Some((_, at)) => *at = stamp,
            None => episode.charged.push((location, stamp)),
        }
        episode.next += 1;
        true
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        let mut running = self.episodes.running.lock();
        if let Some(episode) = running.get_mut(&self.id) {
            episode.sessions -= 1;
            if episode.sessions == 0 {
                running.remove(&self.id);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn overlapping_verifications_charge_a_location_once_and_later_ones_again() {
        let episodes = Arc::new(Episodes::default());
        let (e, other) = (ExtentId(4), ExtentId(5));
        let l = Location::new(0, 8192, 4096);
        let moved = Location::new(1, 0, 4096);
        let a = episodes.join(e);
        let b = episodes.join(e);
        let c = episodes.join(other);
        assert!(a.first_at(l), "the first charge");
        assert!(
            !b.first_at(l),
            "the same fault, met by a reader begun before it"
        );
        assert!(b.first_at(moved), "another location of the same extent");
        assert!(c.first_at(l), "another extent");
        drop(a);
        let d = episodes.join(e);
        assert!(d.first_at(l), "begun after the charge: charged again");
        assert!(!b.first_at(l), "b began before d's charge too");
        let f = episodes.join(e);
        assert!(
            !d.first_at(l) && f.first_at(l),
            "d's own charge; f began after it"
        );
        drop((b, d, f));
        assert!(episodes.running.lock().get(&e).is_none(), "the entry went");
        let later = episodes.join(e);
        assert!(later.first_at(l), "a later session charges again");
        drop((c, later));
        assert!(episodes.running.lock().is_empty());
    }
}
