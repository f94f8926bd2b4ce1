//! What the engine-facing features cost (issue 10), each against its baseline in
//! the same run:
//!
//! * `read_hit/{plain,histograms,histograms+listener}`: `Store::read` of cached
//!   extents with latency histograms off, on, and on with an event listener
//!   installed. Target: at most 5 % over `plain`.
//! * `durable_writes/{single,batch}`: 32 writes of 4 KiB on `Store::open`, one
//!   call each vs one `write_batch` (one sync per device and one journal sync).
//!
//! * `tags`: the read hit and `snapshot` on a store whose every extent is tagged,
//!   against an untagged one, and `snapshot_tagged` against `snapshot`
//!   (interleaved passes, medians of 9).
//!
//! * `change_stream`: reading 65,536 retained changes with `changes_since`, per
//!   change, against reading the same number of records with their tags from
//!   `change_baseline` (the resync a consumer does without a stream); and a
//!   tagged in-memory write with the default retention against retention 0
//!   (interleaved passes, medians of 9).
//!
//! Run: `cargo bench --bench engine`. The ratios are printed after the run.

use criterion::{Criterion, criterion_group, criterion_main};
use extentmeta::events::Event;
use extentmeta::{ExtentId, MemBackend, Store, StoreConfig, Tag};
use std::hint::black_box;
use std::time::{Duration, Instant};

const HOT: u64 = 1024;

fn hot_store(histograms: bool, listener: bool) -> Store {
    hot_store_tagged(histograms, listener, false)
}

fn hot_store_tagged(histograms: bool, listener: bool, tagged: bool) -> Store {
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
        let tag = match tagged {
            true => Tag::new(format!("key{id:08}").as_bytes()).expect("short"),
            false => Tag::EMPTY,
        };
        store
            .write_tagged(ExtentId(id), &id.to_le_bytes().repeat(64), tag)
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

/// Mean ns per call of `op` over `rounds` passes of the hot set.
fn pass_ns(rounds: u64, op: impl Fn(ExtentId)) -> f64 {
    let started = Instant::now();
    for r in 0..rounds {
        for i in 0..HOT {
            op(ExtentId((i * 7 + r) % HOT));
        }
    }
    started.elapsed().as_nanos() as f64 / (rounds * HOT) as f64
}

fn tags(_: &mut Criterion) {
    let (plain, tagged) = (
        hot_store(false, false),
        hot_store_tagged(false, false, true),
    );
    let mut ratios = vec![Vec::new(); 3];
    for _ in 0..9 {
        let read = |s: &Store| {
            pass_ns(200, |id| {
                black_box(s.read(id).expect("hit"));
            })
        };
        let snap = |s: &Store| {
            pass_ns(200, |id| {
                black_box(s.snapshot(id).expect("snap"));
            })
        };
        ratios[0].push(read(&tagged) / read(&plain));
        let plain_snapshot = snap(&plain);
        ratios[1].push(snap(&tagged) / plain_snapshot);
        let with_tag = pass_ns(200, |id| {
            black_box(tagged.snapshot_tagged(id).expect("tag"));
        });
        ratios[2].push(with_tag / snap(&tagged));
    }
    let names = [
        "read hit, every extent tagged / untagged",
        "snapshot, every extent tagged / untagged",
        "snapshot_tagged / snapshot",
    ];
    for (name, r) in names.iter().zip(&mut ratios) {
        r.sort_by(f64::total_cmp);
        println!("{name}: {:.3}x (median of 9 interleaved passes)", r[4]);
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

fn change_stream(_: &mut Criterion) {
    const CHANGES: u64 = 1 << 16;
    let store_with = |retention: usize| {
        let config = StoreConfig::builder()
            .change_retention(retention)
            .prefetch_workers(0)
            .build()
            .expect("config");
        Store::new(MemBackend::new(2), config).expect("store")
    };
    let tag = |id: u64| Tag::new(format!("key{id:08}").as_bytes()).expect("short");
    let stream = store_with(CHANGES as usize);
    for id in 0..CHANGES {
        (stream.write_tagged(ExtentId(id), &id.to_le_bytes(), tag(id))).expect("write");
    }
    let from = stream.change_seq() - CHANGES;
    let (plain, retaining) = (store_with(0), store_with(8192));
    let mut ratios = vec![Vec::new(); 2];
    let mut per_change = Vec::new();
    for pass in 0..9u64 {
        let started = Instant::now();
        let changes = stream.changes_since(from).expect("retained");
        assert_eq!(changes.len() as u64, CHANGES);
        black_box(changes);
        let read = started.elapsed().as_nanos() as f64 / CHANGES as f64;
        let started = Instant::now();
        let (_, records) = stream.change_baseline();
        assert_eq!(black_box(records.count()) as u64, CHANGES);
        let scan = started.elapsed().as_nanos() as f64 / CHANGES as f64;
        ratios[0].push(read / scan);
        per_change.push(read);
        let write = |s: &Store| {
            pass_ns(50, |id| {
                let id = ExtentId(id.0 + pass * HOT);
                s.write_tagged(id, &id.0.to_le_bytes(), tag(id.0))
                    .expect("write");
            })
        };
        let without = write(&plain);
        let with = write(&retaining);
        ratios[1].push(with / without);
    }
    per_change.sort_by(f64::total_cmp);
    println!(
        "change stream: changes_since reads {:.1} M changes/s ({:.1} ns each, median of 9)",
        1e3 / per_change[4],
        per_change[4]
    );
    let names = [
        "changes_since per change / change_baseline per record",
        "tagged write, change retention 8192 / retention 0",
    ];
    for (name, r) in names.iter().zip(&mut ratios) {
        r.sort_by(f64::total_cmp);
        println!("{name}: {:.3}x (median of 9 interleaved passes)", r[4]);
    }
}

criterion_group!(benches, read_hit, tags, durable_writes, change_stream);
criterion_main!(benches);
