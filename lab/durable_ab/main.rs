//! Durable 8-writer throughput of two builds of extentmeta in one process: `old`
//! and `new` (the same crate from two source trees, renamed by `run.sh`) and the
//! data-only baseline of `benches/durable.rs`. Rounds rotate the order of the
//! three, so drift of the disk and the host hits each alike; separate processes
//! alternated by hand could not tell a 10 % change from the drift between runs.
//!
//! Prints per-round medians, each build's ratio to the baseline, the ratio of
//! the two builds, and the CPU time and context switches per write of each
//! (from `getrusage`), which move when a build's group commit falls into a
//! different equilibrium.
//!
//! Run with `lab/durable_ab/run.sh` (see there). `DURABLE_AB_VALUE` sets the value
//! size in bytes (default 4096) and `DURABLE_AB_PER_WRITER` the writes per writer
//! per round (default 150): 64 KiB runs with 60, as `benches/durable.rs` does.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const WRITERS: u64 = 8;
const DEVICES: u64 = 2;

/// A positive integer from the environment, or `default`.
fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map_or(default, |v| v.parse().expect("a positive integer"))
        .max(1)
}

/// `DEVICES` files, each write at a fresh offset, synced.
struct Baseline {
    files: Vec<File>,
    next: AtomicU64,
    value: u64,
}

impl Baseline {
    fn new(dir: &Path, value: u64) -> Self {
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
            value,
        }
    }

    fn write(&self, bytes: &[u8]) {
        // Relaxed: a unique slot number, ordered with nothing else.
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        let file = &self.files[(slot % DEVICES) as usize];
        file.write_all_at(bytes, slot / DEVICES * self.value)
            .expect("baseline write");
        file.sync_data().expect("baseline sync");
    }
}

/// Seconds for `WRITERS` threads to do `per_writer` writes each.
fn timed(per_writer: u64, write: impl Fn(u64) + Sync) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..WRITERS {
            let write = &write;
            s.spawn(move || {
                for _ in 0..per_writer {
                    write(t);
                }
            });
        }
    });
    start.elapsed().as_secs_f64()
}

/// The process's CPU seconds (user + system) and context switches so far,
/// exited threads included (`getrusage(RUSAGE_SELF)`).
fn usage() -> (f64, u64) {
    // SAFETY: `getrusage` writes one `rusage` through the pointer, which points
    // to a zeroed, properly aligned value on this stack frame.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (
        seconds(usage.ru_utime) + seconds(usage.ru_stime),
        (usage.ru_nvcsw + usage.ru_nivcsw) as u64,
    )
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(12, |s| s.parse().expect("rounds"));
    let value = setting("DURABLE_AB_VALUE", 4096);
    let per_writer = setting("DURABLE_AB_PER_WRITER", 150);
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let old_config = old::StoreConfig::builder()
        .devices(DEVICES as u16)
        .cache_bytes(8 << 20)
        .prefetch_workers(0)
        .journal_max_bytes(64 << 20)
        .build()
        .expect("config");
    let new_config = new::StoreConfig::builder()
        .devices(DEVICES as u16)
        .cache_bytes(8 << 20)
        .prefetch_workers(0)
        .journal_max_bytes(64 << 20)
        .build()
        .expect("config");
    let old_store = old::Store::open(dir.join("old"), old_config).expect("open old");
    let new_store = new::Store::open(dir.join("new"), new_config).expect("open new");
    let baseline = Baseline::new(dir, value);
    let bytes: Vec<Vec<u8>> = (0..WRITERS).map(|t| vec![t as u8 + 1; value as usize]).collect();
    let (old_id, new_id) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut rates = [Vec::new(), Vec::new(), Vec::new()];
    let mut cost = [(0.0, 0u64); 3];
    for round in 0..rounds {
        for k in 0..3 {
            let which = (round + k) % 3;
            let before = usage();
            let seconds = match which {
                0 => timed(per_writer, |w| {
                    // Relaxed: unique ids only.
                    let id = old_id.fetch_add(1, Ordering::Relaxed);
                    old_store
                        .write(old::ExtentId(id), &bytes[w as usize])
                        .expect("old write");
                }),
                1 => timed(per_writer, |w| {
                    // Relaxed: unique ids only.
                    let id = new_id.fetch_add(1, Ordering::Relaxed);
                    new_store
                        .write(new::ExtentId(id), &bytes[w as usize])
                        .expect("new write");
                }),
                _ => timed(per_writer, |w| baseline.write(&bytes[w as usize])),
            };
            let after = usage();
            rates[which].push((WRITERS * per_writer) as f64 / seconds);
            cost[which].0 += after.0 - before.0;
            cost[which].1 += after.1 - before.1;
        }
    }
    let [old, new, base] = [0, 1, 2].map(|i| median(&rates[i]));
    let writes = (rounds as u64 * WRITERS * per_writer) as f64;
    println!("{value} B values, {per_writer} writes per writer per round");
    println!("writes/s, median of {rounds} rounds: old {old:.0}, new {new:.0}, baseline {base:.0}");
    println!(
        "ratio to the baseline: old {:.3}, new {:.3}; new / old {:.3}",
        old / base,
        new / base,
        new / old
    );
    println!(
        "per write: CPU old {:.0} us, new {:.0} us, baseline {:.0} us; context switches old {:.1}, new {:.1}, baseline {:.1}",
        cost[0].0 / writes * 1e6,
        cost[1].0 / writes * 1e6,
        cost[2].0 / writes * 1e6,
        cost[0].1 as f64 / writes,
        cost[1].1 as f64 / writes,
        cost[2].1 as f64 / writes
    );
}
