//! Scale: a durable store of millions of extents, measured through the public API
//! in fresh processes: open time, memory after open and at its peak (per extent),
//! the longest write latency across a checkpoint rotation, and across a backup
//! (`Store::checkpoint_to`, whose cut holds writes while it reads the records)
//! against the longest of the writes just before it.
//!
//! The store: 2 devices, 512-byte blocks, 16-byte values; every extent written,
//! a checkpoint of all of them, then 10 % overwritten (journal records to
//! replay). Built in /dev/shm when it exists (its syncs are cheap).
//!
//! Run: `cargo bench --bench scale` (1 M extents; `EXTENTMETA_SCALE_MILLIONS=10`
//! for 10 M, which takes minutes to build; `EXTENTMETA_SCALE_STORE=dir` keeps the
//! store between runs). Not run in CI.

mod common;

use common::{fill, status_bytes};
use extentmeta::{ExtentId, Store, StoreConfig};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

fn extents() -> u64 {
    let millions: u64 = std::env::var("EXTENTMETA_SCALE_MILLIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    millions * 1_000_000
}

fn config(journal_max_bytes: u64) -> StoreConfig {
    StoreConfig::builder()
        .devices(2)
        .block_size_bytes(512)
        .cache_bytes(0)
        .prefetch_workers(0)
        .journal_max_bytes(journal_max_bytes)
        .metadata_reserve_bytes(0)
        .build()
        .expect("config")
}

fn build(dir: &Path) {
    let n = extents();
    let huge = 1 << 40;
    let store = Store::open(dir, config(huge)).expect("open");
    fill(&store, 0..n, 1);
    drop(store);
    // The smallest bound: the first commit rotates, checkpointing every record.
    let store = Store::open(dir, config(4096)).expect("open");
    fill(&store, 0..1, 2);
    drop(store);
    let store = Store::open(dir, config(huge)).expect("open");
    fill(&store, 0..n / 10, 3);
}

/// In a child: open and print seconds, RSS after open and the peak, in bytes.
fn child_open(dir: &Path) {
    let before = status_bytes("VmRSS:");
    let start = Instant::now();
    let store = Store::open(dir, config(1 << 40)).expect("open");
    let seconds = start.elapsed().as_secs_f64();
    let after = status_bytes("VmRSS:");
    let peak = status_bytes("VmHWM:");
    let records = store.recovery().expect("durable").records;
    println!("{seconds} {} {} {records}", after - before, peak - before);
}

/// In a child: writes one extent after another with a journal bound the first
/// commit passes, until the rotation's checkpoint (in the background) ended;
/// prints the longest write, the median, the writes and the peak memory (over
/// the process before its first open). The bound is just below the
/// journal's length, so the new journal has as much room as the old one had
/// (a 4 KiB bound would make the writes wait for the checkpoint at 8 KiB:
/// `Writer::held_back`).
fn child_stall(dir: &Path) {
    let before = status_bytes("VmRSS:");
    let opened = Store::open(dir, config(1 << 40)).expect("open");
    let stats = opened.stats();
    let (journal, bound) = (stats.journal_number, stats.journal_bytes.saturating_sub(1));
    drop(opened);
    let store = Store::open(dir, config(bound.max(4096))).expect("open");
    let checkpoints = store.stats().checkpoints;
    let mut latencies = Vec::new();
    let mut id = 0;
    // Bounded: a rotation starts at the first commit, and its checkpoint ends.
    loop {
        let stats = store.stats();
        let done = stats.journal_number > journal
            && stats.checkpoints > checkpoints
            && !stats.checkpoint_pending;
        if done && latencies.len() >= 64 {
            break;
        }
        let t = Instant::now();
        store
            .write(ExtentId(id), &id.to_le_bytes())
            .expect("write across the rotation");
        latencies.push(t.elapsed().as_secs_f64());
        id += 1;
    }
    latencies.sort_by(f64::total_cmp);
    let max = latencies.last().copied().unwrap_or(0.0);
    let median = latencies[latencies.len() / 2];
    let peak = status_bytes("VmHWM:");
    println!("{max} {median} {} {}", latencies.len(), peak - before);
}

/// In a child: one thread writes while the main thread waits a while, then
/// takes a backup. Prints the backup's seconds, the longest write during it,
/// the longest write before it, the median write, and the writes during it.
fn child_backup(dir: &Path) {
    let store = Arc::new(Store::open(dir, config(1 << 40)).expect("open"));
    // 0: before the backup, 1: during it, 2: done.
    let phase = Arc::new(AtomicU8::new(0));
    let writer = {
        let (store, phase) = (Arc::clone(&store), Arc::clone(&phase));
        std::thread::spawn(move || {
            let mut latencies: Vec<(u8, f64)> = Vec::new();
            // Bounded by the phase, set to 2 after the backup.
            for id in 0u64.. {
                // Acquire: pairs with the main thread's stores; a hint of which
                // side of the backup a write began on.
                let at = phase.load(Ordering::Acquire);
                if at == 2 {
                    break;
                }
                let t = Instant::now();
                store
                    .write(ExtentId(id % 1000), &id.to_le_bytes())
                    .expect("write across the backup");
                latencies.push((at, t.elapsed().as_secs_f64()));
            }
            latencies
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    phase.store(1, Ordering::Release);
    let target = dir.with_extension("backup");
    // A backup goes into an empty directory: the last run's is removed.
    let _ = std::fs::remove_dir_all(&target);
    let t = Instant::now();
    store.checkpoint_to(&target).expect("backup");
    let seconds = t.elapsed().as_secs_f64();
    phase.store(2, Ordering::Release);
    let latencies = writer.join().expect("writer");
    let longest = |p: u8| {
        (latencies.iter())
            .filter(|(at, _)| *at == p)
            .map(|(_, l)| *l)
            .fold(0.0, f64::max)
    };
    let mut all: Vec<f64> = latencies.iter().map(|(_, l)| *l).collect();
    all.sort_by(f64::total_cmp);
    let during = latencies.iter().filter(|(at, _)| *at == 1).count();
    println!(
        "{seconds} {} {} {} {during}",
        longest(1),
        longest(0),
        all[all.len() / 2]
    );
}

fn main() {
    let dir_env = std::env::var("EXTENTMETA_SCALE_DIR");
    if let (Ok(case), Ok(dir)) = (std::env::var("EXTENTMETA_SCALE_CASE"), &dir_env) {
        match case.as_str() {
            "open" => child_open(Path::new(dir)),
            "backup" => child_backup(Path::new(dir)),
            _ => child_stall(Path::new(dir)),
        }
        return;
    }
    let tmp = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir");
    let dir = tmp.path().join("store");
    // `EXTENTMETA_SCALE_STORE`: a built store kept between runs (built there if
    // missing; a 10 M build takes minutes), copied for each run, as the cases
    // change what they open.
    let kept = std::env::var("EXTENTMETA_SCALE_STORE").ok();
    let n = extents();
    let built = kept.as_deref().map(Path::new).unwrap_or(&dir);
    if !built.exists() {
        let t = Instant::now();
        build(built);
        println!(
            "scale: {n} extents built in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    if built != dir {
        std::fs::create_dir(&dir).expect("store copy");
        for entry in std::fs::read_dir(built).expect("kept store") {
            let entry = entry.expect("kept store entry");
            std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
        }
    }
    let exe = std::env::current_exe().expect("this binary");
    let run = |case: &str| {
        let out = Command::new(&exe)
            .env("EXTENTMETA_SCALE_CASE", case)
            .env("EXTENTMETA_SCALE_DIR", &dir)
            .output()
            .expect("run the case");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|v| v.parse::<f64>().expect("a number"))
            .collect::<Vec<f64>>()
    };
    let mut opens: Vec<Vec<f64>> = (0..3).map(|_| run("open")).collect();
    opens.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let median = &opens[1];
    let per = |bytes: f64| bytes / n as f64;
    println!(
        "scale: open of {n} extents ({} records) median of 3 fresh processes {:.2} s ({:.2} s per million); \
         memory after open {:.0} B/extent, peak during open {:.0} B/extent",
        median[3],
        median[0],
        median[0] / (n as f64 / 1e6),
        per(median[1]),
        per(median[2])
    );
    let stall = run("stall");
    println!(
        "scale: longest write across a checkpoint rotation at {n} extents {:.1} ms (median write {:.3} ms, {} writes); \
         peak memory of that process {:.0} B/extent (the open, the checkpoint, the writes)",
        stall[0] * 1e3,
        stall[1] * 1e3,
        stall[2],
        per(stall[3])
    );
    let mut backups: Vec<Vec<f64>> = (0..3).map(|_| run("backup")).collect();
    backups.sort_by(|a, b| a[1].total_cmp(&b[1]));
    let b = &backups[1];
    println!(
        "scale: backup of {n} extents {:.2} s; longest write during it {:.1} ms against {:.1} ms \
         before it ({:.1}×; median write {:.3} ms, {} writes during it; median of 3 processes by the longest)",
        b[0],
        b[1] * 1e3,
        b[2] * 1e3,
        b[1] / b[2],
        b[3] * 1e3,
        b[4]
    );
}
