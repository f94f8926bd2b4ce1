//! Emulator configuration: workload mix, fabric latency, clocks and faults.

use crate::error::{Error, Result};
use crate::policy::IntegrityPolicy;

/// Which protocol the emulator drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// This crate's protocol: versioned records, tagged cache, one-snapshot verifier.
    Fixed,
    /// The pre-fix design: "last write pending" and "cache ready" as two flags
    /// written by separate steps, a verifier that reads them in the wrong order and
    /// checks location and checksum read at different moments, an untagged cache.
    Legacy,
}

impl Protocol {
    /// `"fixed"` or `"legacy"`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Fixed => "fixed",
            Protocol::Legacy => "legacy",
        }
    }
}

/// How many actors of each kind run, and what they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Operations started in all (the run ends when they have all finished).
    pub ops: u32,
    /// Extents `0..extents` are used.
    pub extents: u32,
    /// Writer actors.
    pub writers: u32,
    /// Demand-reader actors.
    pub readers: u32,
    /// Prefetcher actors (reads at prefetch priority).
    pub prefetchers: u32,
    /// Compactor actors.
    pub compactors: u32,
    /// Scrubber actors (verification with a resumable cursor).
    pub scrubbers: u32,
    /// Smallest and largest value length in bytes (at least 32).
    pub value_bytes: (u32, u32),
    /// Mean think time of an actor between operations, ns.
    pub think_ns: u64,
    /// Percent of prefetches that claim their load when they are queued and
    /// run later, as the store's readahead hints do (`ReadOp::claim`): a
    /// demand read that meets the claim before it runs waits on it, or takes
    /// the load over if another claim waits ahead of it (the prefetch, finding
    /// it taken, then runs as a plain one). 0 (the default) keeps every
    /// prefetch a plain one.
    pub claim_percent: u32,
    /// Percent of a writer's operations that delete their extent (the
    /// store's `DeleteOp`: reserve, journal, commit). 0 (the default) draws
    /// nothing from the random stream, so the default runs stay as they are.
    pub delete_percent: u32,
    /// Percent of a writer's turns that first run the store's
    /// `reclaim_space` (the same allocator calls, the fabric's device files
    /// cut back past their free tails; a cut no sync made final a power cut
    /// may undo). 0 (the default) draws nothing.
    pub reclaim_percent: u32,
}

/// The storage fabric's latency model, per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Service time floor, ns.
    pub floor_ns: u64,
    /// Uniform jitter added to every I/O, ns.
    pub jitter_ns: u64,
    /// Scale of the heavy (Pareto, α = 1.5) tail, ns.
    pub tail_ns: u64,
    /// Chance per I/O that a burst (a period of queueing) starts, parts per million.
    pub burst_ppm: u32,
    /// I/Os a burst lasts.
    pub burst_ios: u32,
    /// Latency multiplier during a burst.
    pub burst_factor: u32,
    /// Largest extra delay of a write acknowledgment, ns (delayed and out of order).
    pub ack_delay_ns: u64,
}

/// Per-component clocks: every actor sees the virtual time through its own skew and
/// drift (used for backoff, the scrub schedule and device-health windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clocks {
    /// Largest absolute skew, ns.
    pub skew_ns: u64,
    /// Largest absolute drift, parts per million.
    pub drift_ppm: u32,
}

/// Injected faults. Persistent faults stay put across retries and are applied as an
/// overlay over stored bytes; a replica of every committed write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Chance per I/O (read, write or sync) of a transient error, parts per million.
    /// A sync that fails makes nothing durable.
    pub transient_ppm: u32,
    /// Chance per write of a misdirected write (lands on another extent's location),
    /// parts per million.
    pub misdirect_ppm: u32,
    /// Chance per operation started of a bit flip at rest on a committed location,
    /// parts per million.
    pub bitflip_ppm: u32,
    /// Most persistent faults injected in one run.
    pub persistent_budget: u32,
    /// Chance per write (data or metadata) that the disk is full, parts per
    /// million: a data write fails with FPRE029, a metadata write writes a
    /// prefix of its bytes and fails (the journal then releases its reserve and
    /// writes again, and writes are refused until the reserve is made again).
    pub disk_full_ppm: u32,
}

/// Everything one emulator run needs besides its seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    /// The protocol under test.
    pub protocol: Protocol,
    /// Actors and operations.
    pub workload: Workload,
    /// Device latency.
    pub latency: Latency,
    /// Component clocks.
    pub clocks: Clocks,
    /// Injected faults.
    pub faults: Faults,
    /// Devices in the fabric.
    pub devices: u16,
    /// Retry and backoff policy of the verifier.
    pub policy: IntegrityPolicy,
    /// Trace lines kept for a failure report.
    pub trace_lines: usize,
    /// Weakens the fixed protocol's verifier in one place: it checks the media bytes
    /// of one snapshot against the checksum of a *second* snapshot. The sweep must
    /// catch it (proof that the emulator can fail).
    pub weaken_verifier: bool,
    /// Makes the fabric acknowledge every sync at once, while the writes it covers
    /// become durable only when the sync really completes: an operation that
    /// commits on the acknowledgment commits bytes that are not durable yet, as a
    /// protocol that commits before its sync is acknowledged would. The durability
    /// check must catch it (proof that it can fail).
    pub early_sync_ack: bool,
    /// Power cuts per run (fixed protocol): each drops every operation in flight,
    /// loses what no sync made durable on the data devices and in the metadata
    /// directory (a torn last sector, undone directory operations), then recovers
    /// as `Store::open` does and checks invariants 9–11. A crash may also cut the
    /// creation, a rotation, or recovery itself short.
    pub crashes: u32,
    /// Mean distance between two power cuts, in units of steps: a metadata step
    /// (journal or checkpoint I/O) counts 8, any other step 1.
    pub crash_spacing: u64,
    /// The journal is rotated (new journal, checkpoint, pointer switch) once it is
    /// longer than this: small, so that rotations are frequent.
    pub journal_max_bytes: u64,
    /// Bytes of the metadata reserve (small: the emulator keeps it in memory).
    pub metadata_reserve_bytes: u64,
    /// Whether a checkpoint keeps the journal it retires for the next switch
    /// to write over (`StoreConfig::recycle_journals`, on by default), or
    /// removes it.
    pub recycle_journals: bool,
    /// Mutant: acknowledge a group commit when its frames are written, before the
    /// journal sync. The crash checker must catch it.
    pub ack_before_journal_sync: bool,
    /// Mutant: reuse a location unreferenced by a commit before the commit's
    /// journal record is durable. The crash checker must catch it.
    pub reuse_before_durable: bool,
    /// Mutant: switch the checkpoint pointer before the checkpoint is synced. The
    /// crash checker must catch it.
    pub pointer_before_checkpoint_sync: bool,
    /// Mutant: reopen without syncing what recovery read (the newest journal, the
    /// directory). A process kill then a power cut must catch it.
    pub reopen_without_sync: bool,
    /// Mutant: reopen without appending the marker a rotation that stopped
    /// left out. The next recovery then refuses the store as a cut journal,
    /// which the crash checker must catch.
    pub reopen_without_marker: bool,
    /// Mutant: commit a write in the table before its journal record is durable,
    /// so readers see a generation a power cut can take back. The crash checker
    /// must catch it.
    pub commit_before_journal: bool,
    /// Mutant: a write the journal refused answers a certain failure even when
    /// a checkpoint's image read its proposal first. The checker must catch
    /// its record found after a recovery.
    pub certain_after_image: bool,
    /// Mutant: recovery calls a bad journal region followed by any valid frame
    /// corruption (the rule before durable marks). Power cuts that persist a later
    /// sector of a write but not an earlier one must catch it.
    pub torn_as_corrupt: bool,
    /// Mutant: recovery takes a recycled journal's stale frames past its end
    /// for its own (their sequence numbers unchecked), so it calls any end of
    /// a recycled journal, a clean close's included, corruption. The crash
    /// sweep must catch it: it shows that the stale bytes are there and that
    /// recovery meets them.
    pub stale_as_current: bool,
    /// Mutant: recovery takes a recycled file's old start frame, left after a
    /// new header that a short write or a power cut kept alone, for the new
    /// journal's. The crash sweep on a full disk must catch it.
    pub stale_head_as_current: bool,
    /// Mutant: recovery opens a directory whose checkpoint's journal is missing or
    /// empty as if it held no record. [`lose_metadata`](Self::lose_metadata) must
    /// catch it.
    pub missing_journal_as_empty: bool,
    /// Mutant: a checkpoint whose plan fails removes its image even when the
    /// pointer on disk names it (a failure after the switch). The crash sweep
    /// with metadata faults must catch it.
    pub remove_named_image: bool,
    /// Fault: before one recovery in four, a metadata file the store needs is lost
    /// (the checkpoint's journal removed, emptied or cut to its header, as an
    /// operator or a broken disk may leave it). The open must refuse with a typed
    /// error and change nothing; the file is then restored and recovery goes on.
    pub lose_metadata: bool,
    /// Durable writes of at most this many bytes travel inside their journal record
    /// and skip their data sync (0: none). The default splits the workload's value
    /// sizes, so that both paths run.
    pub inline_write_max: u32,
    /// Writes past `inline_write_max` journal their record while their data's
    /// sync runs (`journal`'s "Overlapped data syncs").
    pub overlap_data_sync: bool,
    /// Mutant: a checkpoint drops the journals it replaces without syncing the
    /// devices first. The crash checker must catch inline writes' data lost.
    pub checkpoint_without_device_sync: bool,
    /// Mutant: a checkpoint syncs the devices before it reads its image, not
    /// after, so an overlapped write that begins between the two is in the
    /// image while its data's sync runs. The checker must catch the record
    /// over data never written that a failed sync leaves in the checkpoint.
    pub sync_devices_before_image: bool,
    /// Mutant: reopen without writing inline writes' data back from the journal.
    /// The crash checker must catch it.
    pub reopen_without_redo: bool,
    /// Mutant: the metadata reserve is made again while a plan behind its
    /// release still runs, whose removal then takes the new file. The
    /// emulator's check that a reserve counted held is on disk must catch it.
    pub restore_during_release: bool,
    /// Mutant: recovery applies a batch's records as it meets them, so a torn
    /// tail keeps part of a batch. The crash checker must catch it.
    pub batch_not_atomic: bool,
    /// Mutant: recovery keeps every record journaled while its data's sync ran,
    /// without reading the data. The crash checker must catch a record whose
    /// data a power cut lost.
    pub trust_unsynced: bool,
    /// Mutant: a compaction journals its relocated record without its tag. The
    /// crash checker must catch the tag lost by a recovery that replays it.
    pub relocation_drops_tag: bool,
    /// Mutant: a device sync counts as covering the inline writes whose
    /// device writes completed while it ran, which `fdatasync` does not
    /// promise. The checker must catch the data a later failed writeback
    /// drops.
    pub sync_covers_later_writes: bool,
    /// Mutant: a journal request that failed is answered as made durable, so
    /// its write commits and answers `Ok` over a record no recovery may show.
    /// The checker must catch the acknowledgment itself, whether or not a
    /// read or a recovery meets the record later.
    pub ack_failed_journal: bool,
    /// Mutant: a delete retires its location as it journals, before its
    /// record is durable (with [`Workload::delete_percent`]). The crash
    /// checker must catch the location reused under a delete a crash took
    /// back.
    pub delete_retires_early: bool,
    /// Mutant: trust a device sync that returned Ok after an earlier sync of the
    /// same device failed (the kernel reports a failed writeback once, so a later
    /// sync returns Ok over dropped pages). The checker must catch data lost.
    pub trust_sync_after_failure: bool,
    /// Mutant: a demand read takes a queued claim over and then waits on its
    /// load instead of loading it (only with claims, see
    /// [`Workload::claim_percent`]): nobody loads it, and the checker must
    /// catch the read left hanging.
    pub take_over_without_load: bool,
    /// Mutant: after a failed device sync, the write-back rewrites only the
    /// inline writes still in flight, not those that returned and whose bytes
    /// only the journal holds. The checker must catch the data lost.
    pub rewrite_without_read_back: bool,
    /// Mutant: a verifier that finds an inline write's bytes wrong where a
    /// failed writeback may have dropped them asks for them to be written
    /// again, and nothing is written: it retries, and takes the dropped pages
    /// for a fault unless the store's own rewrite comes first. The checker must
    /// catch the spurious FPRE004.
    pub read_without_rewrite: bool,
}

impl Default for SimConfig {
    /// A small archive under controlled chaos: 16 extents on 3 devices, writers,
    /// readers, prefetchers, a compactor and a scrubber; bursts, skewed clocks,
    /// delayed acknowledgments, transient errors and a few persistent faults.
    fn default() -> Self {
        SimConfig {
            protocol: Protocol::Fixed,
            workload: Workload {
                ops: 600,
                extents: 16,
                writers: 2,
                readers: 2,
                prefetchers: 2,
                compactors: 1,
                scrubbers: 1,
                value_bytes: (64, 256),
                think_ns: 20_000,
                claim_percent: 0,
                delete_percent: 0,
                reclaim_percent: 0,
            },
            latency: Latency {
                floor_ns: 20_000,
                jitter_ns: 10_000,
                tail_ns: 5_000,
                burst_ppm: 20_000,
                burst_ios: 12,
                burst_factor: 20,
                ack_delay_ns: 200_000,
            },
            clocks: Clocks {
                skew_ns: 50_000,
                drift_ppm: 200,
            },
            faults: Faults {
                transient_ppm: 5_000,
                misdirect_ppm: 2_000,
                bitflip_ppm: 2_000,
                persistent_budget: 2,
                disk_full_ppm: 2_000,
            },
            devices: 3,
            policy: IntegrityPolicy::default(),
            trace_lines: 40,
            weaken_verifier: false,
            early_sync_ack: false,
            crashes: 0,
            crash_spacing: 400,
            journal_max_bytes: 1024,
            metadata_reserve_bytes: 512,
            recycle_journals: true,
            ack_before_journal_sync: false,
            reuse_before_durable: false,
            pointer_before_checkpoint_sync: false,
            reopen_without_sync: false,
            reopen_without_marker: false,
            commit_before_journal: false,
            certain_after_image: false,
            torn_as_corrupt: false,
            stale_as_current: false,
            stale_head_as_current: false,
            missing_journal_as_empty: false,
            remove_named_image: false,
            lose_metadata: false,
            trust_sync_after_failure: false,
            inline_write_max: 160,
            overlap_data_sync: true,
            checkpoint_without_device_sync: false,
            sync_devices_before_image: false,
            reopen_without_redo: false,
            restore_during_release: false,
            batch_not_atomic: false,
            trust_unsynced: false,
            relocation_drops_tag: false,
            sync_covers_later_writes: false,
            ack_failed_journal: false,
            delete_retires_early: false,
            take_over_without_load: false,
            rewrite_without_read_back: false,
            read_without_rewrite: false,
        }
    }
}

/// Bounds of [`SimConfig::validate`]: each keeps one run's memory and virtual time
/// finite (no allocation beyond a few MiB, no overflow of the nanosecond clock).
mod bound {
    /// Devices in the fabric.
    pub(super) const DEVICES: u16 = 1024;
    /// Extents in the workload (the table, the history and the checker's state).
    pub(super) const EXTENTS: u32 = 1 << 16;
    /// Actors of all kinds together.
    pub(super) const ACTORS: u64 = 1024;
    /// Largest value, bytes.
    pub(super) const VALUE_BYTES: u32 = 1 << 20;
    /// Any one duration (think time, latency, skew, ack delay), ns: 1 hour.
    pub(super) const DURATION_NS: u64 = 3_600_000_000_000;
    /// Latency multiplier of a burst.
    pub(super) const BURST_FACTOR: u32 = 1000;
    /// Clock drift, ppm (10 %).
    pub(super) const DRIFT_PPM: u32 = 100_000;
    /// A chance, ppm.
    pub(super) const PPM: u32 = 1_000_000;
    /// Trace lines kept.
    pub(super) const TRACE_LINES: usize = 1 << 16;
}

impl SimConfig {
    /// Checks every bound; [`crate::sim::try_run`] runs only a configuration that
    /// passes. Zero is allowed wherever it means "none" (extents, actors, ops,
    /// latencies, faults): such a run does less, it never panics.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first field out of bounds: `devices`
    /// outside 1 ..= 1 024, more than 2^16 extents or 1 024 actors, values over
    /// 1 MiB, a duration over one hour, a burst factor over 1 000, a drift over
    /// 100 000 ppm, a chance over 1 000 000 ppm, more than 2^16 trace lines, a
    /// claim share over 100 %.
    pub fn validate(&self) -> Result<()> {
        let w = &self.workload;
        let l = &self.latency;
        let actors = [
            w.writers,
            w.readers,
            w.prefetchers,
            w.compactors,
            w.scrubbers,
        ]
        .iter()
        .map(|&n| u64::from(n))
        .sum::<u64>();
        let durations = [
            ("workload.think_ns", w.think_ns),
            ("latency.floor_ns", l.floor_ns),
            ("latency.jitter_ns", l.jitter_ns),
            ("latency.tail_ns", l.tail_ns),
            ("latency.ack_delay_ns", l.ack_delay_ns),
            ("clocks.skew_ns", self.clocks.skew_ns),
        ];
        let chances = [
            ("latency.burst_ppm", l.burst_ppm),
            ("faults.transient_ppm", self.faults.transient_ppm),
            ("faults.misdirect_ppm", self.faults.misdirect_ppm),
            ("faults.bitflip_ppm", self.faults.bitflip_ppm),
            ("faults.disk_full_ppm", self.faults.disk_full_ppm),
        ];
        check(
            "devices",
            (1..=bound::DEVICES).contains(&self.devices),
            self.devices,
        )?;
        check("workload.extents", w.extents <= bound::EXTENTS, w.extents)?;
        check("workload (actors)", actors <= bound::ACTORS, actors)?;
        let claims = w.claim_percent;
        check("workload.claim_percent", claims <= 100, claims)?;
        let deletes = w.delete_percent;
        check("workload.delete_percent", deletes <= 100, deletes)?;
        let reclaims = w.reclaim_percent;
        check("workload.reclaim_percent", reclaims <= 100, reclaims)?;
        let (lo, hi) = w.value_bytes;
        check(
            "workload.value_bytes",
            lo.max(hi) <= bound::VALUE_BYTES,
            lo.max(hi),
        )?;
        for (field, ns) in durations {
            check(field, ns <= bound::DURATION_NS, ns)?;
        }
        let factor = l.burst_factor;
        check(
            "latency.burst_factor",
            factor <= bound::BURST_FACTOR,
            factor,
        )?;
        let drift = self.clocks.drift_ppm;
        check("clocks.drift_ppm", drift <= bound::DRIFT_PPM, drift)?;
        for (field, ppm) in chances {
            check(field, ppm <= bound::PPM, ppm)?;
        }
        let lines = self.trace_lines;
        check("trace_lines", lines <= bound::TRACE_LINES, lines)
    }
}

fn check(field: &'static str, ok: bool, value: impl std::fmt::Display) -> Result<()> {
    Error::check_bound(field, ok, value, "SimConfig::validate")
}
