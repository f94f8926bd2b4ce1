//! Prefetches that claim their load ahead of their run, as the store's
//! readahead hints do ([`Workload::claim_percent`](crate::sim::Workload::claim_percent)).

use super::op::{ActiveOp, Input, Op};
use super::{Event, World};
use crate::cache::Priority;
use crate::protocol::{Claim, ReadOp};
use crate::record::ExtentId;
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
    /// is queued (`ReadOp::claim`, the store's code), and runs it after a
    /// while, as a worker takes the hint later: up to four device reads'
    /// time. A demand read of the extent meanwhile takes the load over (a
    /// claim outside any queue always counts as far back). Cached or being
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
        let l = &self.cfg.latency;
        let wait = self.rng.random_range(0..=4 * (l.floor_ns + l.jitter_ns));
        let at = self.now.saturating_add(wait);
        let idx = self.occupy(actor, extent, at, Op::Read(ReadOp::with_claim(token)));
        self.schedule(at, Event::Begin(idx));
    }

    /// The claimed prefetch in slot `idx` starts its run.
    pub(super) fn begin_claimed(&mut self, idx: usize) {
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
