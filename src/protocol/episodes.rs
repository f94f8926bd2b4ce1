//! One device error per fault, however many readers met it.
//!
//! A hot extent's failed load is handed to every reader waiting on it, and
//! each climbs the integrity ladder ([`VerifySession`](super::VerifySession))
//! at the same moment. Each verification would then charge the device for
//! the same fault: twelve readers of one flaky sector made twelve errors and
//! degraded the device (the policy's default is ten in ten minutes), the very
//! escalation of a race into a fault the crate exists to prevent. So the
//! verifications of one extent that overlap in time form one *episode*, and
//! an episode charges each location it found faulty once. Verifications that
//! do not overlap are separate episodes: a sector that fails again later is
//! charged again.
//!
//! Each session holds a [`Joined`] from its start until its verification ends
//! (or it is dropped); the episode ends when the last one leaves. Bounded by
//! the verifications in flight.

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

/// The verifications of one extent that overlap.
#[derive(Debug, Default)]
struct Episode {
    /// Sessions joined and not left.
    sessions: u32,
    /// Locations charged in this episode (one or two: the fault's, and a
    /// transient one's after a move).
    charged: Vec<Location>,
}

/// A session's membership of its extent's episode; leaves on drop.
#[derive(Debug)]
pub(crate) struct Joined {
    episodes: Arc<Episodes>,
    id: ExtentId,
}

impl Episodes {
    /// A verification of `id` starts.
    pub(crate) fn join(self: &Arc<Self>, id: ExtentId) -> Joined {
        self.running.lock().entry(id).or_default().sessions += 1;
        Joined {
            episodes: Arc::clone(self),
            id,
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
    /// Whether a fault found at `location` is the first of this episode
    /// there: the one to charge to the device.
    pub(crate) fn first_at(&self, location: Location) -> bool {
        let mut running = self.episodes.running.lock();
        let Some(episode) = running.get_mut(&self.id) else {
            // Unreachable while this membership lives: charge, as alone.
            return true;
        };
        if episode.charged.contains(&location) {
            return false;
        }
        episode.charged.push(location);
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
        assert!(a.first_at(l), "the first charge of the episode");
        assert!(
            !b.first_at(l),
            "the same fault, met by an overlapping reader"
        );
        assert!(b.first_at(moved), "another location of the same extent");
        assert!(c.first_at(l), "another extent is another episode");
        drop(a);
        let d = episodes.join(e);
        assert!(
            !d.first_at(l),
            "joined while b still runs: the same episode"
        );
        drop((b, d));
        assert!(
            episodes.running.lock().get(&e).is_none(),
            "the episode ended"
        );
        let later = episodes.join(e);
        assert!(later.first_at(l), "a later episode charges again");
        drop((c, later));
        assert!(episodes.running.lock().is_empty());
    }
}
