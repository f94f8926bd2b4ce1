//! Read latency under background compaction and scrubbing, against the same
//! workload with the store idle, in one run.
//!
//! A Zipfian (s = 0.99) read workload over 4 KiB extents on `FileBackend`; the cache
//! holds a tenth of the data, so most cold reads go to the file. Two stores hold the
//! same data: one idle, one with a compactor thread (a bounded rate of compactions)
//! and the scrubber (a bounded byte rate) running. Prints p50/p99/p999 of each and
//! their ratio; criterion measures the mean read of each as well.
//!
//! Run: `cargo bench --bench background`.

use criterion::{Criterion, criterion_group, criterion_main};
use extentmeta::{ExtentId, FileBackend, Store, StoreConfig, TableConfig};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const EXTENTS: u64 = 20_000;
const VALUE_BYTES: usize = 4096;
const READS: usize = 200_000;
/// Compactions per second in the background.
const COMPACTIONS_PER_SEC: u64 = 2_000;
/// Scrub rate in the background.
const SCRUB_BYTES_PER_SEC: u64 = 32 << 20;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Zipfian ids (s = 0.99) by inverse CDF, scattered so hot ids are not adjacent.
fn zipf_ids(n: usize, seed: u64) -> Vec<ExtentId> {
    let weights: Vec<f64> = (1..=EXTENTS).map(|k| 1.0 / (k as f64).powf(0.99)).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(weights.len());
    let mut acc = 0.0;
    for w in weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut s = seed;
    (0..n)
        .map(|_| {
            let u = (splitmix(&mut s) >> 11) as f64 / (1u64 << 53) as f64;
            let rank = cdf.partition_point(|&c| c < u) as u64;
            ExtentId(rank.min(EXTENTS - 1).wrapping_mul(7919) % EXTENTS)
        })
        .collect()
}

fn value(id: u64) -> Vec<u8> {
    let mut v = vec![(id % 251) as u8; VALUE_BYTES];
    v[..8].copy_from_slice(&id.to_le_bytes());
    v
}

fn store(dir: &std::path::Path, scrub: bool) -> Store {
    let config = StoreConfig::builder()
        .table(
            TableConfig::builder()
                .max_extents(EXTENTS)
                .build()
                .expect("table"),
        )
        .cache_bytes(EXTENTS * VALUE_BYTES as u64 / 10)
        .prefetch_workers(0)
        .scrub_bytes_per_sec(if scrub { SCRUB_BYTES_PER_SEC } else { 0 })
        .build()
        .expect("config");
    let store = Store::new(FileBackend::open(dir, 2).expect("backend"), config).expect("store");
    for id in 0..EXTENTS {
        store.write(ExtentId(id), &value(id)).expect("write");
    }
    store
}

fn percentiles(mut ns: Vec<u64>) -> [u64; 3] {
    ns.sort_unstable();
    [0.5, 0.99, 0.999].map(|q| ns[((ns.len() as f64 * q) as usize).min(ns.len() - 1)])
}

fn timed_reads(store: &Store, ids: &[ExtentId]) -> Vec<u64> {
    ids.iter()
        .map(|&id| {
            let t = Instant::now();
            let bytes = store.read(id).expect("read");
            let ns = t.elapsed().as_nanos() as u64;
            assert_eq!(&bytes[..8], &id.0.to_le_bytes(), "right extent");
            ns
        })
        .collect()
}

/// Compacts random extents at a bounded rate until stopped.
fn compactor(
    store: Arc<Store>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut s = 42;
        let period = Duration::from_nanos(1_000_000_000 / COMPACTIONS_PER_SEC);
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let id = ExtentId(splitmix(&mut s) % EXTENTS);
            if store.compact(id).is_ok() {
                done.fetch_add(1, Ordering::Relaxed);
            }
            next += period;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    })
}

fn background(c: &mut Criterion) {
    let idle_dir = tempfile::tempdir().expect("tempdir");
    let busy_dir = tempfile::tempdir().expect("tempdir");
    let idle = store(idle_dir.path(), false);
    let busy = Arc::new(store(busy_dir.path(), true));
    let ids = zipf_ids(READS, 1);
    // Warm both caches the same way.
    timed_reads(&idle, &ids[..READS / 4]);
    timed_reads(&busy, &ids[..READS / 4]);

    let stop = Arc::new(AtomicBool::new(false));
    let compactions = Arc::new(AtomicU64::new(0));
    let handle = compactor(busy.clone(), stop.clone(), compactions.clone());
    let before = busy.stats();

    // Interleave idle and busy measurements in slices so drift of the machine
    // affects both alike.
    let (mut idle_ns, mut busy_ns) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for chunk in ids.chunks(10_000) {
        idle_ns.extend(timed_reads(&idle, chunk));
        busy_ns.extend(timed_reads(&busy, chunk));
    }
    let secs = started.elapsed().as_secs_f64();
    // Background work done while the percentiles were measured.
    let stats = busy.stats();

    let mut g = c.benchmark_group("background");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    let mut i = 0;
    g.bench_function("read/idle", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            black_box(idle.read(ids[i]).expect("read"))
        })
    });
    g.bench_function("read/compaction+scrub", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            black_box(busy.read(ids[i]).expect("read"))
        })
    });
    g.finish();

    stop.store(true, Ordering::Relaxed);
    handle.join().expect("compactor");
    let [i50, i99, i999] = percentiles(idle_ns);
    let [b50, b99, b999] = percentiles(busy_ns);
    println!(
        "background: {READS} Zipfian 4 KiB reads per store over {EXTENTS} extents, FileBackend, cache = 10 % of data"
    );
    println!("  idle:                 p50={i50} ns p99={i99} ns p999={i999} ns");
    println!("  compaction + scrub:   p50={b50} ns p99={b99} ns p999={b999} ns");
    println!(
        "  ratio busy/idle:      p50={:.2}x p99={:.2}x p999={:.2}x",
        b50 as f64 / i50 as f64,
        b99 as f64 / i99 as f64,
        b999 as f64 / i999 as f64
    );
    println!(
        "  background work:      {} compactions committed, {} extents / {} MiB scrubbed during the {secs:.1} s measured; fpre004={} quarantines={}",
        stats.compactions_committed - before.compactions_committed,
        stats.scrub_extents - before.scrub_extents,
        (stats.scrub_bytes - before.scrub_bytes) >> 20,
        stats.fpre004,
        stats.quarantines
    );
    assert_eq!(stats.fpre004, 0, "a healthy store never raises FPRE004");
}

criterion_group!(benches, background);
criterion_main!(benches);
