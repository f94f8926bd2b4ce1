//! Store counters.

use crate::cache::CacheStats;
use crate::protocol::Tally;
use crate::sync::Counter;

/// Operation and integrity counters of a [`Store`](crate::Store).
///
/// The read success rate is `read_ok / reads`.
///
/// Non-exhaustive: counters are added as the store learns to count more;
/// read the fields, build none.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// The cache's counters.
    pub cache: CacheStats,
    /// `read` calls.
    pub reads: u64,
    /// `read` calls that returned bytes.
    pub read_ok: u64,
    /// Writes begun: `write` calls (and their tagged and `Bytes` forms), and the
    /// writes of `write_batch` calls, that passed their argument checks
    /// (length, and a batch's duplicates).
    pub writes: u64,
    /// Of those, the ones that committed: a `write` call that returned `Ok`,
    /// and each write of a `write_batch` that returned `Ok` (a batch that
    /// returned an error adds none, though a write of it may have committed,
    /// as `write_batch` says).
    pub write_ok: u64,
    /// Prefetch hints queued (by `prefetch` or readahead).
    pub prefetch_queued: u64,
    /// Hints dropped because the queue was full or prefetch is off.
    pub prefetch_dropped: u64,
    /// Hints cancelled because the generation changed while queued.
    pub prefetch_cancelled: u64,
    /// Prefetch loads that finished (loaded, or found the entry cached).
    pub prefetch_done: u64,
    /// Prefetch loads abandoned: the load failed (a backend error, or a backend
    /// panic, contained) or the store was dropped mid-load. The worker goes on with
    /// the next hint.
    pub prefetch_abandoned: u64,
    /// Backend calls that panicked. Each panic was contained and became the I/O
    /// error of its request ([`Error::Io`](crate::Error::Io), kind `Other`).
    pub backend_panics: u64,
    /// Verifications that found the media bytes good.
    pub verify_ok: u64,
    /// Verifications that met a concurrent commit and took a fresh snapshot (a race,
    /// never a fault).
    pub verify_raced: u64,
    /// Verifications whose failures cleared within the retry limit.
    pub verify_transient: u64,
    /// Re-reads of a stable version after a failed check.
    pub retries: u64,
    /// Persistent faults found: FPRE004 raised by the verifier after the retry
    /// limit (each quarantines its extent; `verify` answers
    /// [`Verdict::Repaired`](crate::Verdict::Repaired) if the remap then succeeds).
    pub fpre004: u64,
    /// Extents quarantined.
    pub quarantines: u64,
    /// Quarantined extents remapped from a good copy.
    pub remaps: u64,
    /// Quarantined extents left quarantined: no good copy.
    pub remap_failed: u64,
    /// Compactions that moved their extent.
    pub compactions_committed: u64,
    /// Compactions that found the record changed and freed their target.
    pub compactions_aborted: u64,
    /// Device errors recorded: one per faulty location a verification found,
    /// unless another verification of the extent charged it since this one
    /// began (the readers of one failed load each verify it; they met one
    /// fault).
    pub device_errors: u64,
    /// Devices degraded: by the health policy, by a failed sync, or before a
    /// reopen (the journal keeps them), in ascending order. New writes avoid
    /// them; `Store::drain` moves their extents away.
    pub devices_degraded: Vec<u16>,
    /// Scrub passes completed that verified at least one extent.
    pub scrub_passes: u64,
    /// Extents whose media the scrubber judged: verified, repaired, or found
    /// faulty (FPRE004); not one a write or delete raced, nor a quarantined
    /// one whose good copy was still missing.
    pub scrub_extents: u64,
    /// The bytes of those extents.
    pub scrub_bytes: u64,
    /// Latency percentiles per operation kind.
    pub latency: super::latency::OpLatencies,
    /// Listener calls that panicked (contained; see [`crate::events`]).
    pub listener_panics: u64,
    /// Locations a store without a journal keeps out of use because a
    /// listener panicked on the change that left them (its manifest may
    /// still name them; see [`crate::events`]): given back when the store is
    /// made again. Always 0 for a durable store.
    pub locations_kept_for_listeners: u64,
    /// Journal syncs (group commits) of a durable store; 0 in memory.
    pub journal_syncs: u64,
    /// Journal appends of a durable store: one per durable write, batch,
    /// delete, compaction, remap, quarantine or mark, and one per marker the
    /// store appends itself (an overlapped write's data made durable, the
    /// close), whether or not its group commit then succeeded;
    /// `journal_syncs / journal_commits` is the share of appends that paid for
    /// their own sync.
    pub journal_commits: u64,
    /// Bytes in the active journal.
    pub journal_bytes: u64,
    /// The active journal's number (bumped by each rotation).
    pub journal_number: u64,
    /// Checkpoints written by rotations (in the background: see
    /// [`checkpoint_pending`](Self::checkpoint_pending)).
    pub checkpoints: u64,
    /// A rotation's checkpoint is being written: the journals it replaces are
    /// removed when it ends.
    pub checkpoint_pending: bool,
    /// The metadata journal failed (a write or sync of it or of its directory
    /// did): every change is refused with FPRE036 until the store is reopened,
    /// and reads go on. An engine may reopen as soon as it sees this.
    pub journal_failed: bool,
    /// The scrubber's resumable cursor: the next id it will look at.
    pub scrub_cursor: u64,
    /// Retired locations waiting for readers to finish.
    pub retired_pending: u64,
    /// Inline writes (durable in the journal) whose data no device sync has
    /// covered at its location yet: the next checkpoint or data sync does.
    pub inline_unsynced: u64,
    /// Inline writes written again to their locations after a failed sync of
    /// their device (which may have dropped their pages), from the writes' own
    /// bytes while they ran.
    pub inline_rewritten: u64,
    /// The same, from their journal records: the writes had returned and let
    /// their bytes go.
    pub inline_read_back: u64,
    /// Tags held in memory: one per tagged record, plus one per tagged write in
    /// flight (see [`Tag`](crate::Tag)).
    pub tags_held: u64,
}

impl StoreStats {
    /// `read_ok / reads`, or 1 with no reads.
    pub fn read_success_rate(&self) -> f64 {
        if self.reads == 0 {
            1.0
        } else {
            self.read_ok as f64 / self.reads as f64
        }
    }
}

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// The live counters behind [`StoreStats`].
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: Counter,)*
        }

        impl Counters {
            /// Copies every counter into `stats`.
            pub(crate) fn fill(&self, stats: &mut StoreStats) {
                $(stats.$name = self.$name.get();)*
            }
        }
    };
}

impl Counters {
    /// Adds what one integrity session did (see [`Tally`]).
    pub(crate) fn add_tally(&self, tally: Tally) {
        let Tally {
            verify_ok,
            verify_raced,
            verify_transient,
            retries,
            fpre004,
            quarantines,
            remaps,
            remap_failed,
        } = tally;
        self.verify_ok.add(u64::from(verify_ok));
        self.verify_raced.add(u64::from(verify_raced));
        self.verify_transient.add(u64::from(verify_transient));
        self.retries.add(u64::from(retries));
        self.fpre004.add(u64::from(fpre004));
        self.quarantines.add(u64::from(quarantines));
        self.remaps.add(u64::from(remaps));
        self.remap_failed.add(u64::from(remap_failed));
    }
}

counters!(
    reads,
    read_ok,
    writes,
    write_ok,
    prefetch_queued,
    prefetch_dropped,
    prefetch_cancelled,
    prefetch_done,
    prefetch_abandoned,
    backend_panics,
    verify_ok,
    verify_raced,
    verify_transient,
    retries,
    fpre004,
    quarantines,
    remaps,
    remap_failed,
    compactions_committed,
    compactions_aborted,
    device_errors,
    scrub_passes,
    scrub_extents,
    scrub_bytes,
    inline_rewritten,
    inline_read_back,
);

/// Every device degraded: the health policy's, and the allocator's (a
/// failed device sync degrades there, and a reopen restores the journaled
/// ones there only).
fn degraded(core: &crate::protocol::Core) -> Vec<u16> {
    let mut all = core.health.degraded();
    all.extend(core.allocator.degraded_devices());
    all.sort_unstable();
    all.dedup();
    all
}

impl super::Store {
    /// Counters since the store was created.
    pub fn stats(&self) -> StoreStats {
        let core = &self.shared.core;
        let mut stats = StoreStats {
            cache: core.cache.stats(),
            devices_degraded: degraded(core),
            // Relaxed: progress for statistics, ordered with nothing.
            scrub_cursor: self
                .shared
                .scrub_cursor
                .load(crate::sync::Ordering::Relaxed),
            retired_pending: core.reclaimer.pending() as u64,
            inline_unsynced: core.write_back.len() as u64,
            tags_held: core.tags.len() as u64,
            ..StoreStats::default()
        };
        self.shared.counters.fill(&mut stats);
        stats.latency = self.shared.latency.summary();
        stats.listener_panics = self.shared.core.events.panics();
        // Relaxed: a statistic.
        stats.locations_kept_for_listeners =
            (self.shared.core.kept_for_listeners).load(std::sync::atomic::Ordering::Relaxed);
        if let Some(journal) = &self.shared.journal {
            let j = journal.stats();
            stats.journal_syncs = j.syncs;
            stats.journal_commits = j.commits;
            stats.journal_bytes = j.bytes;
            stats.journal_number = j.number;
            stats.checkpoints = j.checkpoints;
            stats.checkpoint_pending = j.rotating;
            stats.journal_failed = journal.failure().is_some();
        }
        stats
    }
}
