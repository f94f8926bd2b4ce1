//! What the engine-facing features cost (issue 10), each against its baseline in
//! the same run:
//!
//! * `read_hit/{plain,histograms,histograms+listener}`: `Store::read` of cached
//!   extents with latency histograms off, on, and on with an event listener
//!   installed. Target: at most 5 % over `plain`.
//! * `durable_writes/{single,batch}`: 32 writes of 4 KiB on `Store::open`, one
//!   call each vs one `write_batch` (one sync per device and one journal sync).
//!
//! Run: `cargo bench --bench engine`. The ratios are printed after the run.

use criterion::{Criterion, criterion_group, criterion_main};
use extentmeta::events::Event;
use extentmeta::{ExtentId, MemBackend, Store, StoreConfig};
use std::hint::black_box;
use std::time::{Duration, Instant};

const HOT: u64 = 1024;

fn hot_store(histograms: bool, listener: bool) -> Store {
    let config = StoreConfig::builder()
        .latency_histograms(histograms)
        .prefetch_workers(0)
        .build()
        .expect("config");
    let store = Store::new(MemBackend::new(2), config).expect("store");
    if listener {
        store.set_listener(|e: &Event| {
            black_box(e);
        });
    }
    for id in 0..HOT {
        store
            .write(ExtentId(id), &id.to_le_bytes().repeat(64))
            .expect("write");
        store.read(ExtentId(id)).expect("warm");
    }
    store
}

/// Mean ns per hit read over `rounds` passes of the hot set (interleaved runs).
fn hit_ns(store: &Store, rounds: u64) -> f64 {
    let started = Instant::now();
    for r in 0..rounds {
        for i in 0..HOT {
            let id = ExtentId((i * 7 + r) % HOT);
            black_box(store.read(id).expect("hit"));
        }
    }
    started.elapsed().as_nanos() as f64 / (rounds * HOT) as f64
}

fn read_hit(c: &mut Criterion) {
    let variants = [
        ("plain", hot_store(false, false)),
        ("histograms", hot_store(true, false)),
        ("histograms+listener", hot_store(true, true)),
    ];
    let mut g = c.benchmark_group("read_hit");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for (name, store) in &variants {
        let mut i = 0u64;
        g.bench_function(*name, |b| {
            b.iter(|| {
                i = (i + 7) % HOT;
                black_box(store.read(ExtentId(i)).expect("hit"))
            })
        });
    }
    g.finish();
    // Interleaved passes, medians: the ratio the target is about.
    let mut ratios = vec![Vec::new(); 2];
    for _ in 0..9 {
        let plain = hit_ns(&variants[0].1, 200);
        for (k, (_, store)) in variants[1..].iter().enumerate() {
            ratios[k].push(hit_ns(store, 200) / plain);
        }
    }
    for (k, name) in ["histograms", "histograms+listener"].iter().enumerate() {
        ratios[k].sort_by(f64::total_cmp);
        println!(
            "read hit with {name}: {:.3}x plain (median of 9 interleaved passes)",
            ratios[k][4]
        );
    }
}

fn durable_writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::builder().devices(2).build().expect("config");
    let store = Store::open(dir.path(), config).expect("open");
    let value = vec![0x5au8; 4096];
    let mut generation = 0u64;
    let mut g = c.benchmark_group("durable_writes");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(300));
    g.bench_function("single", |b| {
        b.iter(|| {
            generation += 1;
            for id in 0..32 {
                store.write(ExtentId(id), &value).expect("write");
            }
        })
    });
    g.bench_function("batch", |b| {
        b.iter(|| {
            let items: Vec<(ExtentId, &[u8])> = (0..32)
                .map(|id| (ExtentId(100 + id), value.as_slice()))
                .collect();
            store.write_batch(&items).expect("batch");
        })
    });
    g.finish();
    let time = |f: &dyn Fn()| {
        let started = Instant::now();
        f();
        started.elapsed().as_secs_f64()
    };
    let mut ratios = Vec::new();
    for _ in 0..5 {
        let single = time(&|| {
            for id in 0..32 {
                store.write(ExtentId(id), &value).expect("write");
            }
        });
        let batch = time(&|| {
            let items: Vec<(ExtentId, &[u8])> = (0..32)
                .map(|id| (ExtentId(100 + id), value.as_slice()))
                .collect();
            store.write_batch(&items).expect("batch");
        });
        ratios.push(single / batch);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "32 durable 4 KiB writes: one write_batch is {:.1}x faster than 32 writes (median of 5)",
        ratios[2]
    );
}

criterion_group!(benches, read_hit, durable_writes);
criterion_main!(benches);
