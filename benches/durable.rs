//! Durable metadata (issue 8): the cost of the journal against a baseline that only
//! writes the data and syncs it, in one run.
//!
//! * (a) 8 writer threads, 4 KiB values on `Store::open` vs 8 threads writing 4 KiB
//!   at distinct offsets of the same number of files, `sync_data` after each write:
//!   throughput ratio, and journal syncs per acknowledged write (group commit).
//!   4 KiB writes travel in their journal record (one sync, inline); the same at
//!   64 KiB and 1 MiB, past the inline bound (data sync, then journal sync).
//! * (b) one writer: p50 latency of a durable 4 KiB write vs one write + `fdatasync`.
//! * the inline bound: 8 writers at 16 KiB to 128 KiB, inline and synced, each
//!   against the baseline (how `inline_write_max`'s default was chosen).
//! * overlapped data syncs: 8 writers at 64 KiB and 1 MiB (past the inline
//!   bound), the record journaled while the data syncs (`overlap_data_sync`,
//!   the default) and after it, each against the baseline, in rotating rounds
//!   (`EXTENTMETA_OVERLAP_ROUNDS`, default 7; medians). Set
//!   `EXTENTMETA_DURABLE_ONLY=overlap` to run only this part.
//! * `EXTENTMETA_DURABLE_ONLY=4k` runs only (a) at 4 KiB. (a) runs
//!   `EXTENTMETA_THROUGHPUT_ROUNDS` rounds per size (default 15), in the full run
//!   too, and times the baseline first in odd rounds.
//! * (c) recovery time of 1 000 000 extents: a checkpoint plus 100 000 journal
//!   records (built in /dev/shm when it exists, so its syncs are cheap).
//! * (d) journal and checkpoint bytes per extent, from the file sizes of (c).
//!
//! (a) and (b) run on the file system of the system temp dir (a real disk); rounds
//! alternate store and baseline so drift hits both. Criterion then measures the
//! mean single durable write and the mean baseline write.
//!
//! Run: `cargo bench --bench durable`.

mod common;

use common::fill;
use criterion::{Criterion, criterion_group, criterion_main};
use extentmeta::{ExtentId, Store, StoreConfig};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const VALUE: usize = 4096;
const DEVICES: u16 = 2;
const WRITERS: u64 = 8;
/// Value sizes of the throughput rounds, and writes per writer thread per round
/// (fewer for larger values: about the same seconds per round).
const SIZES: [(usize, u64); 3] = [(4 << 10, 150), (64 << 10, 60), (1 << 20, 8)];
/// Timed rounds per size (the median is reported, and the whole run's ratio),
/// after one untimed round of each side: a fresh store's first round also
/// allocates its journal and settles its group size, and with 3 rounds it alone
/// moved the median. At 4 KiB, 15 rounds and the untimed one fill the default
/// 64 MiB journal about 1.2 times, so the whole run holds one rotation, about
/// as many as a sustained load meets per write.
const ROUNDS: usize = 15;
/// Single-writer latency samples per round.
const LATENCY_SAMPLES: usize = 200;

fn store_config(journal_max_bytes: u64) -> StoreConfig {
    store_builder(journal_max_bytes)
        .build()
        .expect("valid config")
}

fn store_builder(journal_max_bytes: u64) -> extentmeta::store::StoreConfigBuilder {
    StoreConfig::builder()
        .devices(DEVICES)
        .cache_bytes(8 << 20)
        .prefetch_workers(0)
        .journal_max_bytes(journal_max_bytes)
}

fn payload(id: u64) -> Vec<u8> {
    payload_of(id, VALUE)
}

fn payload_of(id: u64, len: usize) -> Vec<u8> {
    let mut v = vec![(id % 251) as u8; len];
    v[..8].copy_from_slice(&id.to_le_bytes());
    v
}

/// The data-only baseline: `DEVICES` files, each write at a fresh offset, synced.
struct Baseline {
    files: Vec<File>,
    next: AtomicU64,
}

impl Baseline {
    fn new(dir: &Path) -> Self {
        let files = (0..DEVICES)
            .map(|d| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(dir.join(format!("base{d}")))
                    .expect("open baseline file")
            })
            .collect();
        Baseline {
            files,
            next: AtomicU64::new(0),
        }
    }

    fn write(&self, bytes: &[u8]) {
        // Relaxed: a unique slot number, ordered with nothing else.
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        let file = &self.files[(slot % u64::from(DEVICES)) as usize];
        let offset = slot / u64::from(DEVICES) * bytes.len() as u64;
        file.write_all_at(bytes, offset).expect("baseline write");
        file.sync_data().expect("baseline sync");
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds for `WRITERS` threads to do `per_writer` writes each.
fn timed_threads(per_writer: u64, write: impl Fn(u64, u64) + Sync) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..WRITERS {
            let write = &write;
            s.spawn(move || {
                for n in 0..per_writer {
                    write(t, n);
                }
            });
        }
    });
    start.elapsed().as_secs_f64()
}

fn throughput(dir: &Path, sizes: &[(usize, u64)]) {
    let rounds: usize = std::env::var("EXTENTMETA_THROUGHPUT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(ROUNDS);
    for &(size, per_writer) in sizes {
        let label = if size >= 1 << 20 {
            format!("{} MiB", size >> 20)
        } else {
            format!("{} KiB", size >> 10)
        };
        let store_dir = dir.join(format!("store-{size}"));
        let store = Store::open(&store_dir, store_config(64 << 20)).expect("open");
        let baseline = Baseline::new(&mkdir(dir.join(format!("base-{size}"))));
        let bytes: Vec<Vec<u8>> = (0..WRITERS).map(|t| payload_of(t, size)).collect();
        let (mut ratios, mut syncs_per_ack) = (Vec::new(), Vec::new());
        let (mut store_secs, mut base_secs) = (0.0, 0.0);
        let next_id = AtomicU64::new(0);
        let write = |t: u64, _| {
            // Relaxed: unique ids only.
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            store
                .write(ExtentId(id), &bytes[t as usize])
                .expect("durable write");
        };
        let base = || timed_threads(per_writer, |t, _| baseline.write(&bytes[t as usize]));
        // A store round's time runs until a checkpoint its writes started has
        // ended: the checkpoint's flush would otherwise land in the baseline's
        // round that follows (and the baseline leaves nothing behind).
        let store_round = || {
            let start = Instant::now();
            timed_threads(per_writer, write);
            // Bounded: the rotation's checkpoint ends, or fails and ends.
            while store.stats().checkpoint_pending {
                std::thread::sleep(Duration::from_micros(100));
            }
            start.elapsed().as_secs_f64()
        };
        // Untimed: see ROUNDS. A store that has run a while writes each new
        // journal over the one its last checkpoint retired, whose space is
        // allocated already; a fresh store's first two journals allocate theirs
        // as they go (zeros ahead of the appends). The small writes fill
        // journals, so they warm up until the third (the first recycled one);
        // EXTENTMETA_WARM_JOURNALS sets another (1: a fresh store).
        let warm: u64 = std::env::var("EXTENTMETA_WARM_JOURNALS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if size == VALUE { 3 } else { 1 });
        store_round();
        while store.stats().journal_number < warm {
            store_round();
        }
        base();
        if warm > 1 {
            println!(
                "durable/8 writers {label}: warmed up to journal {}",
                store.stats().journal_number
            );
        }
        let (first, mut quiet_store, mut quiet_base) = (store.stats(), 0.0, 0.0);
        for round in 0..rounds {
            // Odd rounds time the baseline first, so that drift hits both.
            let early = (round % 2 == 1).then(base);
            let before = store.stats();
            let s = store_round();
            let after = store.stats();
            let b = early.unwrap_or_else(base);
            let acks = after.write_ok - before.write_ok;
            let syncs = after.journal_syncs - before.journal_syncs;
            let ops = (WRITERS * per_writer) as f64;
            println!(
                "durable/8 writers {label} round {round}: store {:.0} writes/s, baseline {:.0} \
                 writes/s, ratio {:.3}, journal syncs/ack {:.3}, checkpoints {}",
                ops / s,
                ops / b,
                b / s,
                syncs as f64 / acks as f64,
                after.checkpoints - before.checkpoints,
            );
            ratios.push(b / s);
            syncs_per_ack.push(syncs as f64 / acks as f64);
            (store_secs, base_secs) = (store_secs + s, base_secs + b);
            if after.checkpoints == before.checkpoints {
                (quiet_store, quiet_base) = (quiet_store + s, quiet_base + b);
            }
        }
        let bound = if size == VALUE { 1.5 } else { 0.9 };
        println!(
            "durable/8 writers {label} MEDIAN: throughput ratio store/baseline {:.3} \
             (bound >= {bound}), journal syncs per acknowledged write {:.3}{}",
            median(ratios),
            median(syncs_per_ack),
            if size == VALUE {
                " (bound <= 0.15)"
            } else {
                ""
            }
        );
        // The median drops the rounds a rotation slowed (its checkpoint syncs
        // every device, and the group commits meanwhile wait behind that flush);
        // the whole run's ratio charges them, as a sustained load pays them.
        // The same sums over the rounds without a checkpoint tell the
        // rotation's share from the statistic's.
        println!(
            "durable/8 writers {label} WHOLE RUN: throughput ratio store/baseline {:.3} \
             over {rounds} rounds holding {} checkpoints; {:.3} over the rounds without one",
            base_secs / store_secs,
            store.stats().checkpoints - first.checkpoints,
            quiet_base / quiet_store,
        );
        drop(store);
        if size == VALUE {
            // An open reads the active journal whole, and past its end a
            // recycled one holds the retired journal's frames, which the
            // torn-tail check looks through at every open.
            let start = Instant::now();
            let reopened = Store::open(&store_dir, store_config(64 << 20)).expect("reopen");
            let secs = start.elapsed().as_secs_f64();
            let stats = reopened.stats();
            println!(
                "durable/8 writers {label}: reopened in {secs:.3} s (journal {} of {} B, {} B of it written)",
                stats.journal_number,
                std::fs::metadata(store_dir.join(format!("journal-{:020}", stats.journal_number)))
                    .map_or(0, |m| m.len()),
                stats.journal_bytes,
            );
        }
        // Each size's files go before the next: the larger ones are GiBs.
        let _ = std::fs::remove_dir_all(&store_dir);
        drop(baseline);
        let _ = std::fs::remove_dir_all(dir.join(format!("base-{size}")));
    }
}

/// The inline bound's choice: 8 writers at sizes around it, each written inline
/// (in the journal record, one sync) and synced (data sync, then journal sync),
/// against the baseline, in rotating rounds.
fn threshold(dir: &Path) {
    const PER_WRITER: u64 = 40;
    for size in [16 << 10, 32 << 10, 64 << 10, 128 << 10] {
        let open = |inline: u32, name: &str| {
            let config = store_builder(64 << 20)
                .inline_write_max(inline)
                .build()
                .expect("valid config");
            Store::open(dir.join(format!("{name}-{size}")), config).expect("open")
        };
        let inline = open(1 << 20, "inline");
        let synced = open(0, "synced");
        let baseline = Baseline::new(&mkdir(dir.join(format!("t-base-{size}"))));
        let bytes: Vec<Vec<u8>> = (0..WRITERS).map(|t| payload_of(t, size)).collect();
        let next_id = AtomicU64::new(0);
        let run = |store: &Store| {
            timed_threads(PER_WRITER, |t, _| {
                // Relaxed: unique ids only.
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                store
                    .write(ExtentId(id), &bytes[t as usize])
                    .expect("durable write");
            })
        };
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let i = run(&inline);
            let s = run(&synced);
            let b = timed_threads(PER_WRITER, |t, _| baseline.write(&bytes[t as usize]));
            on.push(b / i);
            off.push(b / s);
        }
        println!(
            "durable/inline bound: {} KiB, 8 writers, throughput / baseline: inline {:.3}, \
             synced {:.3} (median of {ROUNDS})",
            size >> 10,
            median(on),
            median(off)
        );
        drop((inline, synced, baseline));
        for name in ["inline", "synced", "t-base"] {
            let _ = std::fs::remove_dir_all(dir.join(format!("{name}-{size}")));
        }
    }
}

/// Overlapped data syncs on and off, at sizes past the inline bound, against
/// the baseline: rotating rounds, so that the disk's drift hits all three.
fn overlap(dir: &Path) {
    let rounds: usize = std::env::var("EXTENTMETA_OVERLAP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    for (size, per_writer) in [(64usize << 10, 60u64), (1 << 20, 12)] {
        let open = |on: bool, name: &str| {
            let config = store_builder(64 << 20)
                .overlap_data_sync(on)
                .build()
                .expect("valid config");
            Store::open(dir.join(format!("{name}-{size}")), config).expect("open")
        };
        let (on, off) = (open(true, "overlap-on"), open(false, "overlap-off"));
        let baseline = Baseline::new(&mkdir(dir.join(format!("o-base-{size}"))));
        let bytes: Vec<Vec<u8>> = (0..WRITERS).map(|t| payload_of(t, size)).collect();
        let next_id = AtomicU64::new(0);
        let run = |store: &Store| {
            timed_threads(per_writer, |t, _| {
                // Relaxed: unique ids only.
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                store
                    .write(ExtentId(id), &bytes[t as usize])
                    .expect("durable write");
            })
        };
        let base = || timed_threads(per_writer, |t, _| baseline.write(&bytes[t as usize]));
        let (mut with, mut without, mut gain) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            // Rotate who goes first.
            let (a, b, s) = match round % 3 {
                0 => {
                    let a = run(&on);
                    let b = run(&off);
                    (a, b, base())
                }
                1 => {
                    let s = base();
                    let a = run(&on);
                    (a, run(&off), s)
                }
                _ => {
                    let b = run(&off);
                    let s = base();
                    (run(&on), b, s)
                }
            };
            with.push(s / a);
            without.push(s / b);
            gain.push(b / a);
        }
        let label = if size >= 1 << 20 {
            format!("{} MiB", size >> 20)
        } else {
            format!("{} KiB", size >> 10)
        };
        println!(
            "durable/overlap: {label}, 8 writers, throughput / baseline: overlapped {:.3}, \
             sync first {:.3}; overlapped / sync first {:.3} (medians of {rounds} rounds; \
             bound >= 0.9 overlapped)",
            median(with),
            median(without),
            median(gain)
        );
        drop((on, off, baseline));
        for name in ["overlap-on", "overlap-off", "o-base"] {
            let _ = std::fs::remove_dir_all(dir.join(format!("{name}-{size}")));
        }
    }
}

fn latency(dir: &Path) {
    let store = Store::open(dir.join("lat-store"), store_config(64 << 20)).expect("open");
    let baseline = Baseline::new(&mkdir(dir.join("lat-base-dir")));
    let bytes = payload(7);
    let (mut s_lat, mut b_lat) = (Vec::new(), Vec::new());
    let before = store.stats();
    let mut id = 0;
    for _ in 0..ROUNDS {
        for _ in 0..LATENCY_SAMPLES {
            let t = Instant::now();
            store.write(ExtentId(id), &bytes).expect("durable write");
            s_lat.push(t.elapsed().as_secs_f64());
            id += 1;
            let t = Instant::now();
            baseline.write(&bytes);
            b_lat.push(t.elapsed().as_secs_f64());
        }
    }
    let after = store.stats();
    let (s, b) = (median(s_lat), median(b_lat));
    println!(
        "durable/1 writer: p50 store {:.1} us, baseline {:.1} us, ratio {:.3} (bound <= 1.1), \
         journal syncs/ack {:.3}",
        s * 1e6,
        b * 1e6,
        s / b,
        (after.journal_syncs - before.journal_syncs) as f64
            / (after.write_ok - before.write_ok) as f64
    );
}

fn mkdir(dir: std::path::PathBuf) -> std::path::PathBuf {
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

const RECOVERY_EXTENTS: u64 = 1_000_000;
const RECOVERY_JOURNAL: u64 = 100_000;

fn recovery_config(journal_max_bytes: u64) -> StoreConfig {
    StoreConfig::builder()
        .devices(DEVICES)
        .block_size_bytes(512)
        .cache_bytes(0)
        .prefetch_workers(0)
        .journal_max_bytes(journal_max_bytes)
        .build()
        .expect("valid config")
}

fn size_of(dir: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir)
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.metadata().expect("stat").len())
        .sum()
}

fn recovery() {
    let tmp = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir");
    let dir = tmp.path();
    let huge = 1 << 40;
    let t = Instant::now();
    {
        let store = Store::open(dir, recovery_config(huge)).expect("open");
        fill(&store, 0..RECOVERY_EXTENTS, 1);
    }
    {
        // The smallest bound: the first commit rotates, checkpointing all records.
        let store = Store::open(dir, recovery_config(4096)).expect("open");
        fill(&store, 0..1, 2);
        assert!(store.stats().journal_number > store.recovery().expect("durable").checkpoint);
    }
    {
        let store = Store::open(dir, recovery_config(huge)).expect("open");
        fill(&store, 1..RECOVERY_JOURNAL + 1, 3);
    }
    println!(
        "durable/recovery: built in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut times = Vec::new();
    let mut report = None;
    for _ in 0..3 {
        let t = Instant::now();
        let store = Store::open(dir, recovery_config(huge)).expect("open");
        times.push(t.elapsed().as_secs_f64());
        report = store.recovery();
    }
    let report = report.expect("durable");
    println!(
        "durable/recovery: {} records ({} replayed from the journal) opened in {:.3} s median of 3 \
         (bound <= 1 s)",
        report.records,
        report.replayed,
        median(times)
    );
    let journal = size_of(dir, "journal-");
    let checkpoint = size_of(dir, "checkpoint-");
    println!(
        "durable/bytes: journal {journal} B for {} records = {:.1} B/record; \
         checkpoint {checkpoint} B for {} extents = {:.1} B/extent",
        report.replayed,
        journal as f64 / report.replayed as f64,
        report.records,
        checkpoint as f64 / report.records as f64
    );
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    match std::env::var("EXTENTMETA_DURABLE_ONLY").as_deref() {
        Ok("overlap") => return overlap(tmp.path()),
        Ok("4k") => {
            let four_k: Vec<_> = SIZES.into_iter().filter(|&(s, _)| s == VALUE).collect();
            return throughput(tmp.path(), &four_k);
        }
        _ => {}
    }
    throughput(tmp.path(), &SIZES);
    overlap(tmp.path());
    threshold(tmp.path());
    latency(tmp.path());
    recovery();

    let store = Store::open(tmp.path().join("crit-store"), store_config(64 << 20)).expect("open");
    let baseline = Baseline::new(&mkdir(tmp.path().join("crit-base")));
    let bytes = payload(9);
    let mut group = c.benchmark_group("durable");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let mut id = 0;
    group.bench_function("store write 4KiB", |b| {
        b.iter(|| {
            id += 1;
            store.write(ExtentId(id), &bytes).expect("durable write")
        })
    });
    group.bench_function("baseline write+fdatasync 4KiB", |b| {
        b.iter(|| baseline.write(&bytes))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
