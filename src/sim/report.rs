//! What a run reports: counters, violations, latency, and a replayable trace.

use super::config::Protocol;
use crate::record::ExtentId;
use std::collections::VecDeque;
use std::fmt::Write as _;

/// One prefetch that went to the media, and the causes of its latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefetchSample {
    /// From its start to its answer, virtual ns.
    pub latency_ns: u64,
    /// Device reads it issued (more than one: a retry after the record changed, or
    /// the ladder's re-reads after a failed check).
    pub media_reads: u32,
    /// Virtual ns its own device reads took (the rest was waiting: on another
    /// reader's load of the extent, or in a backoff).
    pub device_ns: u64,
    /// Times it waited on another reader's load of the same extent.
    pub waits: u32,
    /// Backoffs it slept (after an injected transient error).
    pub backoffs: u32,
    /// Whether a journal rotation (a checkpoint) ran at some step of it.
    pub in_rotation: bool,
}

/// The result of one emulator run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The seed that replays this run.
    pub seed: u64,
    /// `"fixed"` or `"legacy"`.
    pub protocol: &'static str,
    /// Protocol steps taken (events handled).
    pub steps: u64,
    /// Virtual time at the end, ns.
    pub virtual_ns: u64,
    /// Operations started by the actors (the workload's `ops`).
    pub ops: u64,
    /// Demand reads of extents that had data.
    pub reads: u64,
    /// Demand reads that returned bytes.
    pub reads_ok: u64,
    /// Writes started.
    pub writes: u64,
    /// Writes committed.
    pub writes_ok: u64,
    /// Compactions committed.
    pub compactions: u64,
    /// FPRE004 raised where a persistent fault was injected.
    pub fpre004_real: u64,
    /// FPRE004 raised with no persistent fault there, because injected transient
    /// errors alone failed every read of the stable version (a streak longer than
    /// the retry limit): the retry policy's business, not a race.
    pub fpre004_transient_streak: u64,
    /// FPRE004 raised with no injected fault to explain it: a race called a fault.
    pub fpre004_spurious: u64,
    /// Reads that returned a generation not current at any instant inside them.
    pub stale_served: u64,
    /// Reads that returned bytes of another extent or damaged bytes.
    pub corrupt_served: u64,
    /// Extents quarantined.
    pub quarantines: u64,
    /// Quarantined extents remapped.
    pub remaps: u64,
    /// Failed demand reads by error code.
    pub read_errors: std::collections::BTreeMap<&'static str, u64>,
    /// Every prefetch that went to the media (a prefetch that found its extent
    /// cached costs nothing and is not counted), with what its time went to.
    pub prefetches: Vec<PrefetchSample>,
    /// Prefetches that claimed their load to run it later
    /// ([`Workload::claim_percent`](super::Workload::claim_percent)).
    pub claims: u64,
    /// Those whose load a demand read took over before they ran.
    pub claims_taken_over: u64,
    /// Deletes started ([`Workload::delete_percent`](super::Workload::delete_percent)).
    pub deletes: u64,
    /// Deletes committed.
    pub deletes_ok: u64,
    /// `reclaim_space` calls that cut a device file back
    /// ([`Workload::reclaim_percent`](super::Workload::reclaim_percent)).
    pub reclaims: u64,
    /// Power cuts (those during creation or recovery included).
    pub crashes: u64,
    /// Crashes that killed the process only (nothing lost; counted in `crashes`).
    pub process_kills: u64,
    /// Power cuts that hit creation or recovery's own plan.
    pub crashes_in_recovery: u64,
    /// Power cuts that hit a rotation (journal switch or checkpoint).
    pub crashes_in_rotation: u64,
    /// Recoveries run (the first open included).
    pub recoveries: u64,
    /// Recoveries that dropped a torn journal tail.
    pub torn_tails: u64,
    /// Creation or reopen plans an injected I/O error failed: the open fails,
    /// and the emulator opens again (no power cut) on what the plan left.
    pub recovery_plan_failures: u64,
    /// Opens refused, as they must be, after a metadata file was lost
    /// ([`SimConfig::lose_metadata`](super::SimConfig::lose_metadata)).
    pub lost_metadata_refused: u64,
    /// Injected journal I/O errors: each poisons the journal, fails the commits
    /// waiting on it, and reopens the store.
    pub journal_failures: u64,
    /// Device syncs that failed (the device then fails every sync until the
    /// store is reopened, which the emulator then does).
    pub device_sync_failures: u64,
    /// Times the metadata reserve was released because the disk was full.
    pub reserve_releases: u64,
    /// Of which: releases for a reopen plan, which then resumed at the write
    /// that failed.
    pub reopen_reserve_releases: u64,
    /// Of which: for a device write of the plan (inline data written back).
    pub reopen_redo_releases: u64,
    /// Writes whose bytes traveled in their journal record (one sync).
    pub inline_writes: u64,
    /// Inline writes' data that recovery wrote back from the journal.
    pub inline_redone: u64,
    /// Inline writes' data written again after a failed device sync from
    /// their journal records (the writes had returned and let their own
    /// bytes go).
    pub inline_read_back: u64,
    /// Inline writes' bytes a verifier or a compaction wrote again after
    /// reading them wrong where no sync of their device had covered them yet
    /// (pages a failed writeback dropped before the store heard of it, or an
    /// injected fault).
    pub read_rewrites: u64,
    /// Writes whose record was journaled while their data synced (about one
    /// sync).
    pub overlapped_writes: u64,
    /// Their records that recovery dropped: the data had not become durable
    /// (never acknowledged).
    pub unsynced_dropped: u64,
    /// Journal group commits completed.
    pub journal_syncs: u64,
    /// Checkpoints completed (rotations).
    pub checkpoints: u64,
    /// Rotations whose new journal was written over a retired one.
    pub journals_recycled: u64,
    /// Every invariant violation, in order.
    pub violations: Vec<String>,
    /// The last steps before the end, formatted.
    pub trace: Vec<String>,
    /// A hash of the whole trace: equal for two runs of one seed.
    pub trace_hash: u64,
}

impl Report {
    pub(crate) fn new(seed: u64, protocol: Protocol) -> Self {
        Report {
            seed,
            protocol: protocol.name(),
            ..Report::default()
        }
    }

    /// Whether the run violated nothing.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// `reads_ok / reads` (1 with no reads).
    pub fn read_success_rate(&self) -> f64 {
        if self.reads == 0 {
            1.0
        } else {
            self.reads_ok as f64 / self.reads as f64
        }
    }
}

/// The trace: a ring of the last steps and a hash over all of them.
#[derive(Debug)]
pub(crate) struct Trace {
    ring: VecDeque<(u64, usize, &'static str, ExtentId, &'static str)>,
    capacity: usize,
    hash: u64,
}

impl Trace {
    pub(crate) fn new(capacity: usize) -> Self {
        Trace {
            ring: VecDeque::with_capacity(capacity),
            capacity,
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }

    fn mix(&mut self, x: u64) {
        // FNV-1a over the words of each step.
        for b in x.to_le_bytes() {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub(crate) fn record(
        &mut self,
        now: u64,
        slot: usize,
        op: &'static str,
        extent: ExtentId,
        event: &'static str,
    ) {
        self.mix(now);
        self.mix(slot as u64);
        self.mix(op.len() as u64 ^ u64::from(op.as_bytes()[0]) << 8);
        self.mix(extent.0);
        self.mix(event.len() as u64);
        if self.capacity == 0 {
            return;
        }
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back((now, slot, op, extent, event));
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.ring
            .iter()
            .map(|(t, slot, op, e, ev)| {
                let mut line = String::new();
                let _ = write!(line, "t={t:>12} ns  op#{slot:<3} {op:<15} {e:<11} {ev}");
                line
            })
            .collect()
    }
}
