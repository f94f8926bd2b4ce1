//! Prefetches that claim their load ahead of their run, as the store's
//! readahead hints do ([`Workload::claim_percent`](crate::sim::Workload::claim_percent)).

use super::op::{ActiveOp, Input, Op};
use super::{Event, World};
use crate::cache::{Cache, ClaimQueue, Priority};
use crate::protocol::{Claim, ReadOp};
use crate::record::ExtentId;
use crate::sim::SimConfig;
use crate::sync::Arc;
use rand::Rng;

impl World {
    /// Whether this prefetch claims its load ahead of its run
    /// ([`Workload::claim_percent`](crate::sim::Workload::claim_percent)); the
    /// random stream is drawn only when claims are on, so that a run without
    /// them is the run it always was.
    pub(super) fn claims_this_one(&mut self) -> bool {
        let percent = self.cfg.workload.claim_percent;
        percent > 0 && self.rng.random_range(0..100) < percent
    }

    /// A prefetch that claims its load now, as a readahead hint does when it
    /// is queued (`ReadOp::claim`, the store's code), takes the next place in
    /// the run's claim queue, and runs after a while, as a worker takes the
    /// hint later: up to four device reads' time. A demand read of the extent
    /// meanwhile waits on the load unless another claim waits ahead of it,
    /// and takes it over then (`ClaimQueue`, as in the store). Cached or being
    /// loaded already: a plain prefetch, which finds that.
    pub(super) fn start_claimed(&mut self, actor: usize, extent: ExtentId) {
        let token = match ReadOp::claim(&self.core, extent) {
            Claim::Claimed(token, _) => token,
            _ => {
                let op = Op::Read(ReadOp::new(extent, Priority::Prefetch));
                return self.start(actor, extent, op);
            }
        };
        self.report.claims += 1;
        token.enqueued(self.claim_queue.give(), &self.claim_queue);
        let l = &self.cfg.latency;
        let wait = self.rng.random_range(0..=4 * (l.floor_ns + l.jitter_ns));
        let at = self.now.saturating_add(wait);
        let idx = self.occupy(actor, extent, at, Op::Read(ReadOp::with_claim(token)));
        self.schedule(at, Event::Begin(idx));
    }

    /// The claimed prefetch in slot `idx` starts its run.
    pub(super) fn begin_claimed(&mut self, idx: usize) {
        self.claim_queue.took();
        if let Some(Some(ActiveOp {
            op: Op::Read(read), ..
        })) = self.slots.get(idx)
            && read.claim_taken_over()
        {
            self.report.claims_taken_over += 1;
        }
        self.dispatch(idx, Input::Start);
    }
}

/// A claim queue served by one worker: with a claim at most per prefetcher
/// waiting at a time, more patience would never count one far back, and no
/// reader would take a claim over.
pub(super) fn new_queue() -> Arc<ClaimQueue> {
    Arc::new(ClaimQueue::new(1))
}

/// The emulated store's cache, with the configuration's cache mutant.
pub(super) fn new_cache(cfg: &SimConfig) -> Cache {
    let mut cache = Cache::new(u64::from(cfg.workload.extents) * 256, 4);
    cache.mutant_take_over_without_load = cfg.take_over_without_load;
    cache
}
