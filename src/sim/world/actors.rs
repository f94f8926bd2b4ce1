//! The emulated actors' turns: which operation each starts, on which extent,
//! and the faults at rest injected between them.

use super::op::{ActiveOp, Input, Op};
use super::{ActorKind, Clock, World};
use crate::cache::Priority;
use crate::protocol::{
    BatchItem, BatchWriteOp, CompactOp, DeleteOp, ReadOp, ReadSession, VerifySession, WriteOp,
};
use crate::record::{ExtentId, Location};
use crate::sim::config::Protocol;
use crate::sim::history::value;
use crate::sim::legacy;
use rand::Rng;

impl World {
    pub(super) fn actor_turn(&mut self, a: usize) {
        if self.started >= self.cfg.workload.ops {
            return;
        }
        self.started += 1;
        self.report.ops += 1;
        self.maybe_flip_bits();
        let kind = self.actors[a].kind;
        let legacy = self.cfg.protocol == Protocol::Legacy;
        let extent = match kind {
            ActorKind::Scrubber => {
                let n = u64::from(self.cfg.workload.extents.max(1));
                let c = self.actors[a].cursor;
                self.actors[a].cursor = (c + 1) % n;
                ExtentId(c)
            }
            _ => self.random_extent(),
        };
        if kind == ActorKind::Writer {
            return self.start_write(a, extent);
        }
        let op = match (kind, legacy) {
            (ActorKind::Reader, false) => Op::Session(Box::new(self.read_session(extent))),
            (ActorKind::Prefetcher, false) if self.claims_this_one() => {
                return self.start_claimed(a, extent);
            }
            (ActorKind::Prefetcher, false) => Op::Read(ReadOp::new(extent, Priority::Prefetch)),
            (ActorKind::Compactor, false) => Op::Compact(CompactOp::new(extent)),
            (ActorKind::Scrubber, false) => Op::Verify(Box::new(self.verify_session(extent))),
            (ActorKind::Reader, true) => Op::Legacy(legacy::Op::read(extent, false)),
            (ActorKind::Prefetcher, true) => Op::Legacy(legacy::Op::read(extent, true)),
            (ActorKind::Compactor, true) => Op::Legacy(legacy::Op::compact(extent)),
            (ActorKind::Scrubber, true) => Op::Legacy(legacy::Op::verify(extent, self.cfg.policy)),
            (ActorKind::Writer, _) => return,
        };
        self.start(a, extent, op);
    }

    /// A batch of `first` and 1 to 3 other distinct extents. With deletes
    /// asked for, each of its changes is a delete at that rate (a batch holds
    /// deletes and writes together, durable all or nothing, as
    /// `Store::batch` does).
    pub(super) fn start_batch(&mut self, actor: usize, first: ExtentId) {
        let (lo, hi) = self.cfg.workload.value_bytes;
        let mut ids = vec![first];
        for _ in 0..self.rng.random_range(1..=3) {
            let id = self.random_extent();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if self.meta.space_low() && self.meta.restore_reserve() {
            self.core.set_space_low(false);
        }
        let deletes = self.cfg.workload.delete_percent;
        let items: Vec<(ExtentId, Option<crate::bytes::Bytes>)> = (ids.into_iter())
            .map(|id| {
                // Drawn only when deletes are asked for: the default runs stay
                // as they were.
                if deletes > 0 && self.rng.random_range(0..100) < deletes {
                    return (id, None);
                }
                let len = self.rng.random_range(lo.max(32)..=hi.max(lo.max(32))) as usize;
                // Single-threaded: no commit can slip in before the batch begins.
                let generation = self.core.table.snapshot(id).map_or(0, |s| s.generation()) + 1;
                (id, Some(value(id, generation, len)))
            })
            .collect();
        let written = items.iter().filter(|(_, b)| b.is_some()).count() as u64;
        self.report.writes += written;
        self.report.deletes += items.len() as u64 - written;
        let changes = (items.iter())
            .map(|(id, bytes)| match bytes {
                Some(bytes) => {
                    let generation = crate::sim::history::decode(bytes).map_or(0, |(_, g)| g);
                    BatchItem::Write(
                        *id,
                        bytes.clone(),
                        crate::sim::history::tag(*id, generation),
                    )
                }
                None => BatchItem::Delete(*id),
            })
            .collect();
        let op = Op::Batch(BatchWriteOp::mixed(changes), items);
        self.start(actor, first, op);
    }

    /// `Store::reclaim_space` over the fabric: retired locations no reader
    /// pins are freed, then every device's free tail is cut off, through the
    /// allocator's own `release_tails`, as the store runs it.
    fn reclaim(&mut self) {
        self.core.collect();
        let fabric = &mut self.fabric;
        let released =
            (self.core.allocator).release_tails(true, |device, length| fabric.trim(device, length));
        self.report.reclaims += u64::from(released.is_ok_and(|bytes| bytes > 0));
    }

    pub(super) fn verify_session(&self, extent: ExtentId) -> VerifySession {
        let op = VerifySession::new(extent, self.cfg.policy);
        if self.cfg.weaken_verifier {
            op.weakened()
        } else {
            op
        }
    }

    pub(super) fn read_session(&self, extent: ExtentId) -> ReadSession {
        let op = ReadSession::new(extent, self.cfg.policy);
        if self.cfg.weaken_verifier {
            op.weakened()
        } else {
            op
        }
    }

    pub(super) fn start_write(&mut self, actor: usize, extent: ExtentId) {
        // Reclaims and deletes only when asked for: drawing nothing otherwise
        // keeps the default runs as they were (fixed protocol only).
        let reclaims = self.cfg.workload.reclaim_percent;
        if self.cfg.protocol == Protocol::Fixed
            && reclaims > 0
            && self.rng.random_range(0..100) < reclaims
        {
            self.reclaim();
        }
        let deletes = self.cfg.workload.delete_percent;
        if self.cfg.protocol == Protocol::Fixed
            && deletes > 0
            && self.rng.random_range(0..100) < deletes
        {
            self.report.deletes += 1;
            return self.start(actor, extent, Op::Delete(DeleteOp::new(extent)));
        }
        // One write in eight is a batch of 2 to 4 extents (fixed protocol only:
        // the legacy one has none): durable all or nothing.
        if self.cfg.protocol == Protocol::Fixed && self.rng.random_range(0..8) == 0 {
            return self.start_batch(actor, extent);
        }
        let (lo, hi) = self.cfg.workload.value_bytes;
        let len = self.rng.random_range(lo.max(32)..=hi.max(lo.max(32))) as usize;
        let op = if self.cfg.protocol == Protocol::Legacy {
            Op::Legacy(legacy::Op::write(extent, len))
        } else {
            // As `Store::write`: while the metadata reserve is in use, try to make
            // it again first (the write is refused if that fails).
            if self.meta.space_low() && self.meta.restore_reserve() {
                self.core.set_space_low(false);
            }
            // Single-threaded: no commit can slip in between here and BeginWrite.
            let generation = self
                .core
                .table
                .snapshot(extent)
                .map_or(0, |s| s.generation())
                + 1;
            let bytes = value(extent, generation, len);
            let tag = crate::sim::history::tag(extent, generation);
            Op::Write(WriteOp::new(extent, bytes.clone(), tag), bytes)
        };
        self.report.writes += 1;
        self.start(actor, extent, op);
    }

    pub(super) fn start(&mut self, actor: usize, extent: ExtentId, op: Op) {
        let idx = self.occupy(actor, extent, self.now, op);
        self.dispatch(idx, Input::Start);
    }

    /// Puts `op` in a free slot, started at `started_ns`; its index.
    pub(super) fn occupy(
        &mut self,
        actor: usize,
        extent: ExtentId,
        started_ns: u64,
        op: Op,
    ) -> usize {
        let slot = ActiveOp {
            actor,
            extent,
            started_ns,
            op,
            fault_checked: false,
            injected_streak: 0,
            causes: Default::default(),
            pair: None,
        };
        match self.free_slots.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        }
    }

    pub(super) fn clock_of(&self, actor: usize) -> Clock {
        self.actors.get(actor).map_or(
            Clock {
                skew_ns: 0,
                drift_ppm: 0,
            },
            |a| a.clock,
        )
    }

    /// The committed location of some other extent, for a misdirected write.
    pub(super) fn victim_location(&mut self, not: Location) -> Option<Location> {
        let id = self.random_extent();
        let location = self.committed_location(id)?;
        (location != not && location.length > 0 && !self.model.unmarked(location))
            .then_some(location)
    }

    pub(super) fn committed_location(&self, id: ExtentId) -> Option<Location> {
        match self.cfg.protocol {
            Protocol::Fixed => {
                let s = self.core.table.snapshot(id).ok()?;
                s.is_readable().then_some(s.location())
            }
            Protocol::Legacy => {
                let r = self.legacy.records.get(id.0 as usize)?;
                (r.generation > 0 && !r.quarantined).then_some(r.location)
            }
        }
    }

    pub(super) fn maybe_flip_bits(&mut self) {
        if !self.fabric.roll_bitflip() {
            return;
        }
        let id = self.random_extent();
        if let Some(location) = self.committed_location(id)
            && !self.model.unmarked(location)
        {
            self.fabric.flip(location);
        }
    }
}
