//! Reproduces the original FPRE004 on the legacy protocol and shows the fix holding
//! on the same seeds, in the deterministic storage-fabric emulator.
//!
//! ```sh
//! cargo run --release --example fpre004                          # side-by-side report
//! cargo run --release --example fpre004 -- --seed 42 --protocol legacy   # replay one seed
//! cargo run --release --example fpre004 -- --protocol fixed --crashes 3 --seeds 5000 --expect clean
//! cargo run --release --example fpre004 -- --help                # every knob
//! ```

use clap::{Parser, ValueEnum};
use extentmeta::sim::{self, PrefetchSample, Protocol, Report, SimConfig};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Both,
    Fixed,
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Expect {
    /// Exit non-zero if any run violated an invariant.
    Clean,
    /// Exit non-zero unless every run raised a spurious FPRE004.
    Fpre004,
}

/// The FPRE004 reproducer: legacy vs fixed protocol on the same seeds.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// How many seeds to run (seeds FIRST_SEED .. FIRST_SEED + SEEDS).
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// The first seed of the range.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Replay one seed and print its trace (overrides --seeds).
    #[arg(long)]
    seed: Option<u64>,
    /// Which protocol(s) to run.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    protocol: Which,
    /// Operations per run.
    #[arg(long)]
    ops: Option<u32>,
    /// Extents per run.
    #[arg(long)]
    extents: Option<u32>,
    /// Writer actors.
    #[arg(long)]
    writers: Option<u32>,
    /// Demand-reader, prefetcher and scrubber actors (each kind).
    #[arg(long)]
    readers: Option<u32>,
    /// Transient I/O error chance, parts per million per I/O.
    #[arg(long)]
    transient_ppm: Option<u32>,
    /// Bit flip at rest chance, parts per million per operation.
    #[arg(long)]
    bitflip_ppm: Option<u32>,
    /// Misdirected write chance, parts per million per write.
    #[arg(long)]
    misdirect_ppm: Option<u32>,
    /// Full-disk (ENOSPC) chance, parts per million per write (data and
    /// metadata).
    #[arg(long)]
    disk_full_ppm: Option<u32>,
    /// Most persistent faults per run (a replica always survives).
    #[arg(long)]
    fault_budget: Option<u32>,
    /// Burst (queueing) start chance, parts per million per I/O.
    #[arg(long)]
    burst_ppm: Option<u32>,
    /// Largest write-acknowledgment delay, µs.
    #[arg(long)]
    ack_delay_us: Option<u64>,
    /// Largest clock skew between components, µs.
    #[arg(long)]
    skew_us: Option<u64>,
    /// Largest clock drift, ppm.
    #[arg(long)]
    drift_ppm: Option<u32>,
    /// Weaken the fixed verifier in one place (checksum from a second snapshot): the
    /// sweep must catch it.
    #[arg(long)]
    weaken_verifier: bool,
    /// Make the fabric acknowledge every sync before its writes are durable (a
    /// commit before the sync is acknowledged): the sweep must catch it.
    #[arg(long)]
    early_sync_ack: bool,
    /// Power cuts per run (fixed protocol): crash, recover, check invariants 9–11.
    #[arg(long, default_value_t = 0)]
    crashes: u32,
    /// Mean distance between two power cuts in steps (a metadata step counts 8).
    #[arg(long)]
    crash_spacing: Option<u64>,
    /// Rotate the journal once it is longer than this many bytes.
    #[arg(long)]
    journal_max_bytes: Option<u64>,
    /// Remove the journal a checkpoint retires instead of keeping it for the
    /// next switch to write over (`StoreConfig::recycle_journals(false)`).
    #[arg(long)]
    no_recycle: bool,
    /// Mutant: acknowledge a group commit before its journal sync (the crash sweep
    /// must catch it).
    #[arg(long)]
    ack_before_journal_sync: bool,
    /// Mutant: reuse a location before the record that unreferenced it is durable
    /// (the crash sweep must catch it).
    #[arg(long)]
    reuse_before_durable: bool,
    /// Mutant: switch the checkpoint pointer before the checkpoint is synced (the
    /// crash sweep must catch it).
    #[arg(long)]
    pointer_before_checkpoint_sync: bool,
    /// Mutant: reopen without syncing what recovery read (a process kill, then a
    /// power cut, must catch it).
    #[arg(long)]
    reopen_without_sync: bool,
    /// Mutant: reopen without appending the marker a rotation that stopped left
    /// out (the next recovery refuses the store; the crash sweep must catch it).
    #[arg(long)]
    reopen_without_marker: bool,
    /// Mutant: commit a write in the table before its journal record is durable
    /// (the crash sweep must catch a read of what a power cut then took back).
    #[arg(long)]
    commit_before_journal: bool,
    /// Mutant: a write the journal refused answers a certain failure even when
    /// a checkpoint's image read its proposal first (the checker must catch
    /// its record found after a recovery).
    #[arg(long)]
    certain_after_image: bool,
    /// Mutant: recovery calls a bad journal region followed by any valid frame
    /// corruption (power cuts that persist sectors out of order must catch it).
    #[arg(long)]
    torn_as_corrupt: bool,
    /// Mutant: recovery takes a recycled journal's stale frames past its end
    /// for its own (the crash sweep must catch it).
    #[arg(long)]
    stale_as_current: bool,
    /// Mutant: recovery takes a recycled file's old start frame for the new
    /// journal's (the full-disk crash sweep must catch it).
    #[arg(long)]
    stale_head_as_current: bool,
    /// Mutant: recovery opens a directory whose journal is missing or empty as an
    /// empty store (`--lose-metadata` must catch it).
    #[arg(long)]
    missing_journal_as_empty: bool,
    /// Mutant: a failed checkpoint's image is removed even when the pointer
    /// on disk names it (the crash sweep must catch it).
    #[arg(long)]
    remove_named_image: bool,
    /// Fault: before one recovery in four the current journal is lost (removed,
    /// emptied or cut to its header); the open must refuse it (FPRE023).
    #[arg(long)]
    lose_metadata: bool,
    /// Mutant: trust a device sync that returned Ok after an earlier one failed
    /// (the check of durable bytes must catch the writes its dropped pages lost).
    #[arg(long)]
    trust_sync_after_failure: bool,
    /// Durable writes of at most this many bytes travel in their journal record
    /// and skip their data sync (default: the emulator's, which splits the value
    /// sizes; 0: none).
    #[arg(long)]
    inline_write_max: Option<u32>,
    /// Mutant: a checkpoint drops the journals it replaces without syncing the
    /// devices first (the crash sweep must catch inline writes' data lost).
    #[arg(long)]
    checkpoint_without_device_sync: bool,
    /// Mutant: a checkpoint syncs the devices before it reads its image (an
    /// overlapped write that begins between the two is in the image while its
    /// data's sync runs; the checker must catch the record a failed sync
    /// leaves over data never written).
    #[arg(long)]
    sync_devices_before_image: bool,
    /// Mutant: reopen without writing inline writes' data back from the journal
    /// (the crash sweep must catch it).
    #[arg(long)]
    reopen_without_redo: bool,
    /// Mutant: make the metadata reserve again while a plan behind its
    /// release still runs (the full-disk sweep must catch it).
    #[arg(long)]
    restore_during_release: bool,
    /// Mutant: recovery keeps part of a batch a torn tail cut short (the crash
    /// sweep must catch it).
    #[arg(long)]
    batch_not_atomic: bool,
    /// Mutant: recovery keeps records journaled while their data's sync ran
    /// without reading the data (the crash sweep must catch data lost).
    #[arg(long)]
    trust_unsynced: bool,
    /// Mutant: a compaction journals its relocated record without its tag (the
    /// crash sweep must catch the tag lost).
    #[arg(long)]
    relocation_drops_tag: bool,
    /// Mutant: a device sync counts as covering inline writes that completed
    /// while it ran (the crash sweep must catch data lost).
    #[arg(long)]
    sync_covers_later_writes: bool,
    /// Mutant: a failed journal request is answered as durable, and its write
    /// answers Ok (the checker must catch the acknowledgment).
    #[arg(long)]
    ack_failed_journal: bool,
    /// Mutant: a delete retires its location as it journals (with
    /// `--delete-percent`, the crash sweep must catch the location reused).
    #[arg(long)]
    delete_retires_early: bool,
    /// Percent of prefetches that claim their load and run it later, as the
    /// store's readahead hints do; a demand read meeting a claim waits on it,
    /// or takes the load over if another claim waits ahead of it (default 0:
    /// plain prefetches only).
    #[arg(long, default_value_t = 0)]
    claim_percent: u32,
    /// Percent of writers' operations that delete their extent (default 0:
    /// no deletes, the default runs unchanged).
    #[arg(long, default_value_t = 0)]
    delete_percent: u32,
    /// Percent of writers' turns that first run `reclaim_space` (device files
    /// cut back past their free tails; default 0: none, the default runs
    /// unchanged).
    #[arg(long, default_value_t = 0)]
    reclaim_percent: u32,
    /// Mutant: a demand read takes a claim over and then waits on it instead
    /// of loading it (with `--claim-percent`, the sweep must catch the hung
    /// read).
    #[arg(long)]
    take_over_without_load: bool,
    /// Mutant: after a failed device sync, inline writes that returned are not
    /// written again from the journal (the sweep must catch data lost).
    #[arg(long)]
    rewrite_without_read_back: bool,
    /// Mutant: a verifier that finds an inline write's dropped pages does not
    /// write them again (the sweep must catch the spurious FPRE004).
    #[arg(long)]
    read_without_rewrite: bool,
    /// Fail (exit 1) unless the runs meet this expectation.
    #[arg(long, value_enum)]
    expect: Option<Expect>,
    /// Trace lines printed for a replayed or failing seed.
    #[arg(long, default_value_t = 40)]
    trace_lines: usize,
    /// Worker threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
}

fn config(args: &Args, protocol: Protocol) -> SimConfig {
    let mut c = SimConfig {
        protocol,
        weaken_verifier: args.weaken_verifier,
        early_sync_ack: args.early_sync_ack,
        trace_lines: args.trace_lines,
        crashes: args.crashes,
        ack_before_journal_sync: args.ack_before_journal_sync,
        reuse_before_durable: args.reuse_before_durable,
        pointer_before_checkpoint_sync: args.pointer_before_checkpoint_sync,
        reopen_without_sync: args.reopen_without_sync,
        reopen_without_marker: args.reopen_without_marker,
        commit_before_journal: args.commit_before_journal,
        certain_after_image: args.certain_after_image,
        torn_as_corrupt: args.torn_as_corrupt,
        stale_as_current: args.stale_as_current,
        stale_head_as_current: args.stale_head_as_current,
        missing_journal_as_empty: args.missing_journal_as_empty,
        remove_named_image: args.remove_named_image,
        lose_metadata: args.lose_metadata,
        trust_sync_after_failure: args.trust_sync_after_failure,
        checkpoint_without_device_sync: args.checkpoint_without_device_sync,
        sync_devices_before_image: args.sync_devices_before_image,
        reopen_without_redo: args.reopen_without_redo,
        restore_during_release: args.restore_during_release,
        batch_not_atomic: args.batch_not_atomic,
        trust_unsynced: args.trust_unsynced,
        relocation_drops_tag: args.relocation_drops_tag,
        sync_covers_later_writes: args.sync_covers_later_writes,
        ack_failed_journal: args.ack_failed_journal,
        delete_retires_early: args.delete_retires_early,
        take_over_without_load: args.take_over_without_load,
        rewrite_without_read_back: args.rewrite_without_read_back,
        read_without_rewrite: args.read_without_rewrite,
        ..SimConfig::default()
    };
    c.inline_write_max = args.inline_write_max.unwrap_or(c.inline_write_max);
    c.crash_spacing = args.crash_spacing.unwrap_or(c.crash_spacing);
    c.journal_max_bytes = args.journal_max_bytes.unwrap_or(c.journal_max_bytes);
    c.recycle_journals = !args.no_recycle;
    let w = &mut c.workload;
    w.ops = args.ops.unwrap_or(w.ops);
    w.extents = args.extents.unwrap_or(w.extents).max(1);
    w.writers = args.writers.unwrap_or(w.writers);
    w.claim_percent = args.claim_percent;
    w.delete_percent = args.delete_percent;
    w.reclaim_percent = args.reclaim_percent;
    if let Some(n) = args.readers {
        (w.readers, w.prefetchers, w.scrubbers) = (n, n, n);
    }
    let f = &mut c.faults;
    f.transient_ppm = args.transient_ppm.unwrap_or(f.transient_ppm);
    f.bitflip_ppm = args.bitflip_ppm.unwrap_or(f.bitflip_ppm);
    f.misdirect_ppm = args.misdirect_ppm.unwrap_or(f.misdirect_ppm);
    f.disk_full_ppm = args.disk_full_ppm.unwrap_or(f.disk_full_ppm);
    f.persistent_budget = args.fault_budget.unwrap_or(f.persistent_budget);
    let l = &mut c.latency;
    l.burst_ppm = args.burst_ppm.unwrap_or(l.burst_ppm);
    l.ack_delay_ns = args.ack_delay_us.map_or(l.ack_delay_ns, |us| us * 1000);
    c.clocks.skew_ns = args.skew_us.map_or(c.clocks.skew_ns, |us| us * 1000);
    c.clocks.drift_ppm = args.drift_ppm.unwrap_or(c.clocks.drift_ppm);
    c
}

/// Totals over many runs of one protocol.
#[derive(Default)]
struct Totals {
    seeds: u64,
    steps: u64,
    ops: u64,
    reads: u64,
    reads_ok: u64,
    fpre004_real: u64,
    fpre004_transient_streak: u64,
    fpre004_spurious: u64,
    stale: u64,
    corrupt: u64,
    quarantines: u64,
    remaps: u64,
    dirty: Vec<u64>,
    spurious_seeds: u64,
    first_spurious: Option<u64>,
    prefetches: Vec<PrefetchSample>,
    crashes: u64,
    crashes_in_recovery: u64,
    crashes_in_rotation: u64,
    process_kills: u64,
    recoveries: u64,
    torn_tails: u64,
    recovery_plan_failures: u64,
    lost_metadata_refused: u64,
    reserve_releases: u64,
    device_sync_failures: u64,
    journal_syncs: u64,
    inline_writes: u64,
    inline_redone: u64,
    read_rewrites: u64,
    overlapped_writes: u64,
    unsynced_dropped: u64,
    journal_failures: u64,
    checkpoints: u64,
    journals_recycled: u64,
    claims: u64,
    claims_taken_over: u64,
    deletes: u64,
    deletes_ok: u64,
    reclaims: u64,
    secs: f64,
}

impl Totals {
    fn add(&mut self, r: &Report) {
        self.seeds += 1;
        self.steps += r.steps;
        self.ops += r.ops;
        self.reads += r.reads;
        self.reads_ok += r.reads_ok;
        self.fpre004_real += r.fpre004_real;
        self.fpre004_transient_streak += r.fpre004_transient_streak;
        self.fpre004_spurious += r.fpre004_spurious;
        self.stale += r.stale_served;
        self.corrupt += r.corrupt_served;
        self.quarantines += r.quarantines;
        self.remaps += r.remaps;
        self.crashes += r.crashes;
        self.crashes_in_recovery += r.crashes_in_recovery;
        self.crashes_in_rotation += r.crashes_in_rotation;
        self.process_kills += r.process_kills;
        self.recoveries += r.recoveries;
        self.torn_tails += r.torn_tails;
        self.recovery_plan_failures += r.recovery_plan_failures;
        self.lost_metadata_refused += r.lost_metadata_refused;
        self.reserve_releases += r.reserve_releases;
        self.device_sync_failures += r.device_sync_failures;
        self.journal_syncs += r.journal_syncs;
        self.inline_writes += r.inline_writes;
        self.inline_redone += r.inline_redone;
        self.read_rewrites += r.read_rewrites;
        self.overlapped_writes += r.overlapped_writes;
        self.unsynced_dropped += r.unsynced_dropped;
        self.journal_failures += r.journal_failures;
        self.checkpoints += r.checkpoints;
        self.journals_recycled += r.journals_recycled;
        self.claims += r.claims;
        self.claims_taken_over += r.claims_taken_over;
        self.deletes += r.deletes;
        self.deletes_ok += r.deletes_ok;
        self.reclaims += r.reclaims;
        if !r.is_clean() {
            self.dirty.push(r.seed);
        }
        if r.fpre004_spurious > 0 {
            self.spurious_seeds += 1;
            self.first_spurious = Some(self.first_spurious.map_or(r.seed, |s| s.min(r.seed)));
        }
        self.prefetches.extend_from_slice(&r.prefetches);
    }

    /// The prefetch at quantile `q` of latency (sorting them first), if any.
    fn at_quantile(&mut self, q: f64) -> Option<usize> {
        if self.prefetches.is_empty() {
            return None;
        }
        self.prefetches.sort_unstable_by_key(|p| p.latency_ns);
        Some(((self.prefetches.len() as f64 * q) as usize).min(self.prefetches.len() - 1))
    }

    fn percentile_us(&mut self, q: f64) -> String {
        match self.at_quantile(q) {
            Some(i) => format!("{:.1} µs", self.prefetches[i].latency_ns as f64 / 1000.0),
            None => "-".into(),
        }
    }

    /// `what` over the prefetches at or above quantile `q` of latency.
    fn tail(&mut self, q: f64, what: fn(&[PrefetchSample]) -> String) -> String {
        match self.at_quantile(q) {
            Some(i) => what(&self.prefetches[i..]),
            None => "-".into(),
        }
    }
}

fn sweep(args: &Args, protocol: Protocol, seeds: &[u64], bar: &ProgressBar) -> Totals {
    let cfg = config(args, protocol);
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let start = Instant::now();
    let chunks: Vec<&[u64]> = seeds.chunks(seeds.len().div_ceil(threads).max(1)).collect();
    let reports: Vec<Vec<Report>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                s.spawn(|| {
                    chunk
                        .iter()
                        .map(|&seed| {
                            let mut r = sim::run(seed, &cfg);
                            r.trace.clear(); // keep memory flat over long sweeps
                            bar.inc(1);
                            r
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sweep thread"))
            .collect()
    });
    let mut totals = Totals::default();
    for r in reports.iter().flatten() {
        totals.add(r);
    }
    totals.secs = start.elapsed().as_secs_f64();
    totals
}

fn replay(args: &Args, seed: u64) -> ExitCode {
    let protocols = match args.protocol {
        Which::Both => vec![Protocol::Legacy, Protocol::Fixed],
        Which::Fixed => vec![Protocol::Fixed],
        Which::Legacy => vec![Protocol::Legacy],
    };
    let mut ok = true;
    for protocol in protocols {
        let r = sim::run(seed, &config(args, protocol));
        println!(
            "== seed {seed}, {} protocol: {} steps, {:.3} ms simulated",
            r.protocol,
            r.steps,
            r.virtual_ns as f64 / 1e6
        );
        println!(
            "   reads {} ok {} | FPRE004 spurious {} real {} transient streak {} | stale {} corrupt {} | quarantines {} remaps {} | trace hash {:016x}",
            r.reads,
            r.reads_ok,
            r.fpre004_spurious,
            r.fpre004_real,
            r.fpre004_transient_streak,
            r.stale_served,
            r.corrupt_served,
            r.quarantines,
            r.remaps,
            r.trace_hash
        );
        println!(
            "   crashes {} (process kills {}, in recovery {}, in rotation {}) | journal failures {} | recoveries {} torn tails {} | journal syncs {} checkpoints {}",
            r.crashes,
            r.process_kills,
            r.crashes_in_recovery,
            r.crashes_in_rotation,
            r.journal_failures,
            r.recoveries,
            r.torn_tails,
            r.journal_syncs,
            r.checkpoints
        );
        for v in &r.violations {
            println!("   VIOLATION {v}");
        }
        println!("   last {} steps:", r.trace.len());
        for line in &r.trace {
            println!("     {line}");
        }
        ok &= meets(args.expect, &r);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The flags of a run that change what it does (mutants, workload, faults), for
/// a replay command.
fn mutants(args: &Args) -> String {
    let mut flags = String::new();
    if args.weaken_verifier {
        flags.push_str(" --weaken-verifier");
    }
    if args.early_sync_ack {
        flags.push_str(" --early-sync-ack");
    }
    let counts = [
        (args.ops.map(u64::from), "--ops"),
        (args.extents.map(u64::from), "--extents"),
        (args.writers.map(u64::from), "--writers"),
        (args.readers.map(u64::from), "--readers"),
        (args.transient_ppm.map(u64::from), "--transient-ppm"),
        (args.bitflip_ppm.map(u64::from), "--bitflip-ppm"),
        (args.misdirect_ppm.map(u64::from), "--misdirect-ppm"),
        (args.disk_full_ppm.map(u64::from), "--disk-full-ppm"),
        (args.fault_budget.map(u64::from), "--fault-budget"),
        (args.burst_ppm.map(u64::from), "--burst-ppm"),
        (args.ack_delay_us, "--ack-delay-us"),
        (args.skew_us, "--skew-us"),
        (args.drift_ppm.map(u64::from), "--drift-ppm"),
    ];
    for (n, flag) in counts {
        if let Some(n) = n {
            flags.push_str(&format!(" {flag} {n}"));
        }
    }
    if args.crashes > 0 {
        flags.push_str(&format!(" --crashes {}", args.crashes));
    }
    if let Some(n) = args.crash_spacing {
        flags.push_str(&format!(" --crash-spacing {n}"));
    }
    if let Some(n) = args.journal_max_bytes {
        flags.push_str(&format!(" --journal-max-bytes {n}"));
    }
    if args.no_recycle {
        flags.push_str(" --no-recycle");
    }
    if let Some(n) = args.inline_write_max {
        flags.push_str(&format!(" --inline-write-max {n}"));
    }
    if args.claim_percent > 0 {
        flags.push_str(&format!(" --claim-percent {}", args.claim_percent));
    }
    if args.delete_percent > 0 {
        flags.push_str(&format!(" --delete-percent {}", args.delete_percent));
    }
    if args.reclaim_percent > 0 {
        flags.push_str(&format!(" --reclaim-percent {}", args.reclaim_percent));
    }
    let switches = [
        (args.ack_before_journal_sync, "--ack-before-journal-sync"),
        (args.reuse_before_durable, "--reuse-before-durable"),
        (
            args.pointer_before_checkpoint_sync,
            "--pointer-before-checkpoint-sync",
        ),
        (args.commit_before_journal, "--commit-before-journal"),
        (args.certain_after_image, "--certain-after-image"),
        (args.torn_as_corrupt, "--torn-as-corrupt"),
        (args.stale_as_current, "--stale-as-current"),
        (args.stale_head_as_current, "--stale-head-as-current"),
        (args.missing_journal_as_empty, "--missing-journal-as-empty"),
        (args.remove_named_image, "--remove-named-image"),
        (args.lose_metadata, "--lose-metadata"),
        (args.trust_sync_after_failure, "--trust-sync-after-failure"),
        (args.reopen_without_sync, "--reopen-without-sync"),
        (args.reopen_without_marker, "--reopen-without-marker"),
        (
            args.checkpoint_without_device_sync,
            "--checkpoint-without-device-sync",
        ),
        (
            args.sync_devices_before_image,
            "--sync-devices-before-image",
        ),
        (args.reopen_without_redo, "--reopen-without-redo"),
        (args.restore_during_release, "--restore-during-release"),
        (args.batch_not_atomic, "--batch-not-atomic"),
        (args.relocation_drops_tag, "--relocation-drops-tag"),
        (args.sync_covers_later_writes, "--sync-covers-later-writes"),
        (args.ack_failed_journal, "--ack-failed-journal"),
        (args.delete_retires_early, "--delete-retires-early"),
        (args.trust_unsynced, "--trust-unsynced"),
        (args.take_over_without_load, "--take-over-without-load"),
        (
            args.rewrite_without_read_back,
            "--rewrite-without-read-back",
        ),
        (args.read_without_rewrite, "--read-without-rewrite"),
    ];
    for (on, flag) in switches {
        if on {
            flags.push(' ');
            flags.push_str(flag);
        }
    }
    flags
}

/// What the slowest prefetches (at or above p999) spent their time on.
fn tail_rows(row: &mut impl FnMut(&str, &mut dyn FnMut(&mut Totals) -> String)) {
    fn share(tail: &[PrefetchSample], hit: fn(&PrefetchSample) -> bool) -> String {
        let n = tail.iter().filter(|p| hit(p)).count();
        format!("{:.1} %", 100.0 * n as f64 / tail.len() as f64)
    }
    row("p999 tail: device reads per prefetch", &mut |t| {
        t.tail(0.999, |tail| {
            let reads: u64 = tail.iter().map(|p| u64::from(p.media_reads)).sum();
            format!("{:.2}", reads as f64 / tail.len() as f64)
        })
    });
    row("  time on its own device reads", &mut |t| {
        t.tail(0.999, |tail| {
            let device: u64 = tail.iter().map(|p| p.device_ns).sum();
            let total: u64 = tail.iter().map(|p| p.latency_ns).sum();
            format!("{:.1} %", 100.0 * device as f64 / total.max(1) as f64)
        })
    });
    row("  waited on another load", &mut |t| {
        t.tail(0.999, |tail| share(tail, |p| p.waits > 0))
    });
    row("  backed off (transient error)", &mut |t| {
        t.tail(0.999, |tail| share(tail, |p| p.backoffs > 0))
    });
    // Against the share of every prefetch: rotations run most of the time in the
    // emulator's small journal, and a prefetch never waits for one.
    row("  during a rotation (tail / all)", &mut |t| {
        let all = t.tail(0.0, |all| share(all, |p| p.in_rotation));
        let tail = t.tail(0.999, |tail| share(tail, |p| p.in_rotation));
        format!("{tail} / {all}")
    });
}

fn meets(expect: Option<Expect>, r: &Report) -> bool {
    match expect {
        None => true,
        Some(Expect::Clean) => r.is_clean(),
        Some(Expect::Fpre004) => r.fpre004_spurious > 0,
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.take_over_without_load && args.claim_percent == 0 {
        // Without claims the mutant has nothing to break: a clean run would
        // prove nothing.
        eprintln!("--take-over-without-load needs --claim-percent above 0");
        return ExitCode::from(2);
    }
    if let Some(seed) = args.seed {
        return replay(&args, seed);
    }
    let seeds: Vec<u64> = (args.first_seed..args.first_seed + args.seeds).collect();
    let protocols: Vec<Protocol> = match args.protocol {
        Which::Both => vec![Protocol::Legacy, Protocol::Fixed],
        Which::Fixed => vec![Protocol::Fixed],
        Which::Legacy => vec![Protocol::Legacy],
    };
    let bar = ProgressBar::new(seeds.len() as u64 * protocols.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:40}] {pos}/{len} seeds ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut results = Vec::new();
    for &p in &protocols {
        bar.set_prefix(p.name());
        results.push((p, sweep(&args, p, &seeds, &bar)));
    }
    bar.finish_and_clear();
    print_table(&args, &mut results);

    let mut ok = true;
    for (p, t) in &results {
        ok &= match args.expect {
            None => true,
            Some(Expect::Clean) => t.dirty.is_empty(),
            Some(Expect::Fpre004) => t.spurious_seeds == t.seeds,
        };
        if let Some(&seed) = t.dirty.first() {
            println!(
                "first {} seed with a violation: {seed}; replay: cargo run --release --example fpre004 -- --seed {seed} --protocol {}{}",
                p.name(),
                p.name(),
                mutants(&args)
            );
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_table(args: &Args, results: &mut [(Protocol, Totals)]) {
    let cfg = config(args, Protocol::Fixed);
    println!(
        "FPRE004 reproducer: {} seeds from {}, {} ops over {} extents on {} devices each{}",
        args.seeds,
        args.first_seed,
        cfg.workload.ops,
        cfg.workload.extents,
        cfg.devices,
        match mutants(args).as_str() {
            "" => String::new(),
            flags => format!(" (mutants and crashes:{flags})"),
        }
    );
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, f: &mut dyn FnMut(&mut Totals) -> String| {
        let cells = results.iter_mut().map(|(_, t)| f(t)).collect();
        rows.push((name.to_string(), cells));
    };
    row("operations", &mut |t| t.ops.to_string());
    row("reads", &mut |t| t.reads.to_string());
    row("read success rate", &mut |t| {
        format!("{:.4} %", 100.0 * t.reads_ok as f64 / t.reads.max(1) as f64)
    });
    row("FPRE004 raised", &mut |t| {
        (t.fpre004_real + t.fpre004_transient_streak + t.fpre004_spurious).to_string()
    });
    row("  spurious (a race)", &mut |t| {
        t.fpre004_spurious.to_string()
    });
    row("  real (injected fault)", &mut |t| {
        t.fpre004_real.to_string()
    });
    row("  transient streak (injected)", &mut |t| {
        t.fpre004_transient_streak.to_string()
    });
    row("seeds with spurious FPRE004", &mut |t| {
        format!(
            "{} ({:.1} %)",
            t.spurious_seeds,
            100.0 * t.spurious_seeds as f64 / t.seeds.max(1) as f64
        )
    });
    row("stale bytes served", &mut |t| t.stale.to_string());
    row("corrupt bytes served", &mut |t| t.corrupt.to_string());
    row("quarantines", &mut |t| t.quarantines.to_string());
    row("remaps", &mut |t| t.remaps.to_string());
    row("prefetch latency p50 (media)", &mut |t| {
        t.percentile_us(0.5)
    });
    row("prefetch latency p99 (media)", &mut |t| {
        t.percentile_us(0.99)
    });
    row("prefetch latency p999 (media)", &mut |t| {
        t.percentile_us(0.999)
    });
    tail_rows(&mut row);
    if args.delete_percent > 0 {
        row("deletes (committed)", &mut |t| {
            format!("{} ({})", t.deletes, t.deletes_ok)
        });
    }
    if args.reclaim_percent > 0 {
        row("reclaims (device files cut back)", &mut |t| {
            t.reclaims.to_string()
        });
    }
    if args.claim_percent > 0 {
        row("prefetch claims (run later)", &mut |t| t.claims.to_string());
        row("  taken over by a reader", &mut |t| {
            t.claims_taken_over.to_string()
        });
    }
    row("journal syncs", &mut |t| t.journal_syncs.to_string());
    row("inline writes (one sync)", &mut |t| {
        t.inline_writes.to_string()
    });
    row("  written back by recovery", &mut |t| {
        t.inline_redone.to_string()
    });
    row("  rewritten when read wrong", &mut |t| {
        t.read_rewrites.to_string()
    });
    row("overlapped writes (one sync)", &mut |t| {
        t.overlapped_writes.to_string()
    });
    row("  dropped by recovery", &mut |t| {
        t.unsynced_dropped.to_string()
    });
    row("checkpoints (rotations)", &mut |t| {
        t.checkpoints.to_string()
    });
    row("  over a recycled journal", &mut |t| {
        t.journals_recycled.to_string()
    });
    row("journal failures (reopened)", &mut |t| {
        t.journal_failures.to_string()
    });
    row("device sync failures (reopened)", &mut |t| {
        t.device_sync_failures.to_string()
    });
    row("reserve released (disk full)", &mut |t| {
        t.reserve_releases.to_string()
    });
    row("crashes", &mut |t| t.crashes.to_string());
    row("  in creation or recovery", &mut |t| {
        t.crashes_in_recovery.to_string()
    });
    row("  in rotation", &mut |t| t.crashes_in_rotation.to_string());
    row("  process kills (no power cut)", &mut |t| {
        t.process_kills.to_string()
    });
    row("recoveries (first open included)", &mut |t| {
        t.recoveries.to_string()
    });
    row("  torn journal tails dropped", &mut |t| {
        t.torn_tails.to_string()
    });
    row("  failed plans (opened again)", &mut |t| {
        t.recovery_plan_failures.to_string()
    });
    row("  lost metadata refused (FPRE023)", &mut |t| {
        t.lost_metadata_refused.to_string()
    });
    row("seeds with violations", &mut |t| t.dirty.len().to_string());
    row("simulated steps", &mut |t| t.steps.to_string());
    row("seeds per second", &mut |t| {
        format!("{:.0}", t.seeds as f64 / t.secs.max(1e-9))
    });
    row("crashes per second", &mut |t| {
        format!("{:.0}", t.crashes as f64 / t.secs.max(1e-9))
    });
    row("steps per second", &mut |t| {
        format!("{:.2} M", t.steps as f64 / t.secs.max(1e-9) / 1e6)
    });
    print!("{:<30}", "");
    for (p, _) in results.iter() {
        print!("{:>22}", p.name());
    }
    println!();
    for (name, cells) in rows {
        print!("{name:<30}");
        for c in cells {
            print!("{c:>22}");
        }
        println!();
    }
    for (p, t) in results.iter() {
        if let Some(seed) = t.first_spurious {
            println!(
                "{}: first seed with a spurious FPRE004: {seed} (replay: cargo run --release --example fpre004 -- --seed {seed} --protocol {}{})",
                p.name(),
                p.name(),
                mutants(args)
            );
        }
    }
}
