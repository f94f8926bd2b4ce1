//! The read/write/prefetch protocol through the blocking `Store`.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{decode, value};
use extentmeta::{Backend, Error, ExtentId, Location, MemBackend, Result, Store, StoreConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};

fn config() -> extentmeta::store::StoreConfigBuilder {
    StoreConfig::builder()
        .cache_bytes(1 << 20)
        .prefetch_workers(1)
}

#[test]
fn linearizable_reads_write_then_read_returns_the_new_generation() {
    let store = Store::new(MemBackend::new(2), config().build().unwrap()).unwrap();
    let id = ExtentId(3);
    for generation in 1..=5 {
        let snap = store.write(id, &value(id, generation, 4096)).unwrap();
        assert_eq!(snap.generation(), generation);
        let bytes = store.read(id).unwrap();
        assert_eq!(
            decode(&bytes),
            (id, generation),
            "read after write returned"
        );
        // Second read is a cache hit of the same generation.
        assert_eq!(decode(&store.read(id).unwrap()), (id, generation));
    }
    let stats = store.stats();
    assert_eq!(stats.cache.hits, 5);
    assert_eq!((stats.writes, stats.write_ok), (5, 5));
}

#[test]
fn vacant_extent_is_not_readable() {
    let store = Store::new(MemBackend::new(1), config().build().unwrap()).unwrap();
    assert_eq!(
        store.read(ExtentId(9)).unwrap_err(),
        Error::NotReadable {
            extent: ExtentId(9)
        }
    );
}

#[test]
fn too_large_and_out_of_range_are_typed_errors() {
    let table = extentmeta::TableConfig::builder()
        .max_extents(10)
        .build()
        .unwrap();
    let store = Store::new(MemBackend::new(1), config().table(table).build().unwrap()).unwrap();
    assert_eq!(
        store.write(ExtentId(10), b"x").unwrap_err().code(),
        "FPRE005"
    );
    assert_eq!(store.read(ExtentId(10)).unwrap_err().code(), "FPRE005");
}

#[test]
fn no_space_is_a_typed_error_and_loses_nothing() {
    let cfg = config().device_capacity_bytes(2 * 4096).build().unwrap();
    let store = Store::new(MemBackend::new(1), cfg).unwrap();
    let a = ExtentId(1);
    store.write(a, &value(a, 1, 4096)).unwrap();
    store
        .write(ExtentId(2), &value(ExtentId(2), 1, 4096))
        .unwrap();
    let err = store.write(a, &value(a, 2, 4096)).unwrap_err();
    assert_eq!(err.code(), "FPRE014");
    assert!(
        !store.snapshot(a).unwrap().write_pending(),
        "the failed write was aborted"
    );
    assert_eq!(
        decode(&store.read(a).unwrap()),
        (a, 1),
        "old bytes still served"
    );
}

#[test]
fn invalid_store_config_is_rejected() {
    let bad = [
        StoreConfig::builder().cache_shards(0).build(),
        StoreConfig::builder().block_size_bytes(1000).build(),
        StoreConfig::builder()
            .readahead_min_bytes(1 << 20)
            .readahead_max_bytes(1 << 10)
            .build(),
        StoreConfig::builder().prefetch_queue(0).build(),
    ];
    for b in bad {
        assert_eq!(b.unwrap_err().code(), "FPRE008");
    }
}

/// A backend whose reads of one location block until released, and which says
/// when a read has entered it.
struct GateBackend {
    inner: MemBackend,
    gated: Mutex<Option<Location>>,
    entered: Barrier,
    release: Barrier,
}

impl Backend for GateBackend {
    fn device_count(&self) -> u16 {
        self.inner.device_count()
    }
    fn read_at(&self, location: Location, buf: &mut [u8]) -> Result<()> {
        let gate = *self.gated.lock().unwrap() == Some(location);
        if gate {
            *self.gated.lock().unwrap() = None;
            self.entered.wait();
            self.release.wait();
        }
        self.inner.read_at(location, buf)
    }
    fn write_at(&self, location: Location, bytes: &[u8]) -> Result<()> {
        self.inner.write_at(location, bytes)
    }
    fn sync(&self, device: u16) -> Result<()> {
        self.inner.sync(device)
    }
}

#[test]
fn generation_tagged_cache_rejects_a_fill_superseded_while_it_loaded() {
    let gate = Arc::new(GateBackend {
        inner: MemBackend::new(1),
        gated: Mutex::new(None),
        entered: Barrier::new(2),
        release: Barrier::new(2),
    });
    let store = Store::new(gate.clone(), config().prefetch_workers(0).build().unwrap()).unwrap();
    let id = ExtentId(11);
    let g1 = store.write(id, &value(id, 1, 4096)).unwrap();
    *gate.gated.lock().unwrap() = Some(g1.location());

    std::thread::scope(|s| {
        // The loader: its read of generation 1 blocks inside the backend.
        let loader = s.spawn(|| store.read(id));
        gate.entered.wait();
        // A waiter joins the same load (same generation, single flight).
        let waiter = s.spawn(|| store.read(id));
        while store.stats().cache.misses < 2 {
            std::thread::yield_now(); // until the waiter has joined the flight
        }
        // Generation 2 commits while generation 1 is still loading.
        let g2 = store.write(id, &value(id, 2, 4096)).unwrap();
        assert_eq!(g2.generation(), 2);
        gate.release.wait();
        let from_loader = loader.join().unwrap().unwrap();
        let from_waiter = waiter.join().unwrap().unwrap();
        assert_eq!(
            decode(&from_loader),
            (id, 2),
            "loader retried on the new generation"
        );
        assert_eq!(
            decode(&from_waiter),
            (id, 2),
            "waiter was told superseded, never given gen 1"
        );
    });
    let stats = store.stats().cache;
    assert!(
        stats.superseded >= 1,
        "the generation-1 fill was rejected: {stats:?}"
    );
    assert_eq!(
        decode(&store.read(id).unwrap()),
        (id, 2),
        "gen 1 was not kept"
    );
}

#[test]
fn pending_is_never_cached_nor_served_while_the_acknowledgment_is_late() {
    struct LateAck {
        mem: MemBackend,
        armed: Mutex<bool>,
        entered: Barrier,
        release: Barrier,
    }
    impl Backend for LateAck {
        fn device_count(&self) -> u16 {
            self.mem.device_count()
        }
        fn read_at(&self, l: Location, b: &mut [u8]) -> Result<()> {
            self.mem.read_at(l, b)
        }
        fn write_at(&self, l: Location, b: &[u8]) -> Result<()> {
            self.mem.write_at(l, b)
        }
        fn sync(&self, device: u16) -> Result<()> {
            if std::mem::take(&mut *self.armed.lock().unwrap()) {
                self.entered.wait();
                self.release.wait();
            }
            self.mem.sync(device)
        }
    }
    let late = Arc::new(LateAck {
        mem: MemBackend::new(1),
        armed: Mutex::new(false),
        entered: Barrier::new(2),
        release: Barrier::new(2),
    });
    let store = Store::new(late.clone(), config().prefetch_workers(0).build().unwrap()).unwrap();
    let id = ExtentId(6);
    store.write(id, &value(id, 1, 200)).unwrap();
    *late.armed.lock().unwrap() = true;
    std::thread::scope(|s| {
        let writer = s.spawn(|| store.write(id, &value(id, 2, 200)));
        late.entered.wait(); // generation 2 is written, its acknowledgment late
        assert!(store.snapshot(id).unwrap().write_pending());
        for _ in 0..3 {
            assert_eq!(
                decode(&store.read(id).unwrap()),
                (id, 1),
                "pending bytes served"
            );
        }
        store.prefetch(&[id]);
        late.release.wait();
        assert_eq!(writer.join().unwrap().unwrap().generation(), 2);
    });
    assert_eq!(decode(&store.read(id).unwrap()), (id, 2));
}

#[test]
fn pending_is_never_cached_a_failed_write_leaves_old_bytes() {
    struct FailingSync(MemBackend, AtomicU64);
    impl Backend for FailingSync {
        fn device_count(&self) -> u16 {
            self.0.device_count()
        }
        fn read_at(&self, l: Location, b: &mut [u8]) -> Result<()> {
            self.0.read_at(l, b)
        }
        fn write_at(&self, l: Location, b: &[u8]) -> Result<()> {
            self.0.write_at(l, b)
        }
        fn sync(&self, device: u16) -> Result<()> {
            if self.1.fetch_add(1, Ordering::SeqCst) == 1 {
                return Err(Error::Io {
                    device,
                    op: "sync",
                    kind: std::io::ErrorKind::Other,
                    message: "injected".into(),
                });
            }
            Ok(())
        }
    }
    let store = Store::new(
        FailingSync(MemBackend::new(1), AtomicU64::new(0)),
        config().build().unwrap(),
    )
    .unwrap();
    let id = ExtentId(4);
    store.write(id, &value(id, 1, 100)).unwrap();
    assert_eq!(
        store.write(id, &value(id, 2, 100)).unwrap_err().code(),
        "FPRE009"
    );
    let snap = store.snapshot(id).unwrap();
    assert_eq!((snap.generation(), snap.write_pending()), (1, false));
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    // The next write commits generation 2.
    assert_eq!(store.write(id, &value(id, 2, 100)).unwrap().generation(), 2);
    assert_eq!(decode(&store.read(id).unwrap()), (id, 2));
}

#[test]
fn linearizable_reads_under_concurrent_writers_readers_and_prefetch() {
    const EXTENTS: u64 = 16;
    const WRITERS: u64 = 2;
    let store = Store::new(
        MemBackend::new(2),
        config()
            .cache_bytes(24 * 1024)
            .prefetch_workers(1)
            .build()
            .unwrap(),
    )
    .unwrap();
    // The generation of the last write of each extent that has *returned*.
    let floor: Vec<AtomicU64> = (0..EXTENTS).map(|_| AtomicU64::new(0)).collect();
    for i in 0..EXTENTS {
        let id = ExtentId(i);
        store.write(id, &value(id, 1, 2048)).unwrap();
        floor[i as usize].store(1, Ordering::SeqCst);
    }
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (store, floor) = (&store, &floor);
            s.spawn(move || {
                // Writer w owns extents with id % WRITERS == w, so it knows each
                // generation it commits.
                for round in 0..150u64 {
                    let i = (round * WRITERS + w) % EXTENTS;
                    let id = ExtentId(i);
                    let g = floor[i as usize].load(Ordering::SeqCst) + 1;
                    let snap = store
                        .write(id, &value(id, g, 1024 + (g as usize % 3) * 1024))
                        .unwrap();
                    assert_eq!(snap.generation(), g);
                    floor[i as usize].store(g, Ordering::SeqCst);
                }
            });
        }
        for r in 0..2u64 {
            let (store, floor) = (&store, &floor);
            s.spawn(move || {
                for round in 0..1500u64 {
                    let i = (round * 7 + r * 3) % EXTENTS;
                    let id = ExtentId(i);
                    if round % 16 == 0 {
                        store.prefetch(&[ExtentId((i + 1) % EXTENTS), ExtentId((i + 2) % EXTENTS)]);
                    }
                    let before = floor[i as usize].load(Ordering::SeqCst);
                    match store.read(id) {
                        Ok(bytes) => {
                            let (got_id, g) = decode(&bytes);
                            assert_eq!(got_id, id, "bytes of another extent");
                            assert!(
                                g >= before,
                                "stale: read gen {g} after gen {before} returned"
                            );
                            let after = store.snapshot(id).unwrap().generation();
                            assert!(g <= after, "gen {g} from the future (current {after})");
                        }
                        Err(e) => assert_eq!(e.code(), "FPRE011", "only superseded may fail: {e}"),
                    }
                }
            });
        }
    });
    let stats = store.stats();
    assert_eq!(stats.write_ok, stats.writes);
    assert!(stats.read_ok > 0);
}

#[test]
fn readahead_serves_a_sequential_scan_from_prefetched_entries() {
    let cfg = config()
        .cache_bytes(8 << 20)
        .prefetch_workers(1)
        .build()
        .unwrap();
    let store = Store::new(MemBackend::new(1), cfg).unwrap();
    for i in 0..64 {
        let id = ExtentId(i);
        store.write(id, &value(id, 1, 4096)).unwrap();
    }
    let settled = |store: &Store| {
        // Until every queued hint has been handled (a condition, not a timer).
        loop {
            let s = store.stats();
            if s.prefetch_queued == s.prefetch_done + s.prefetch_cancelled
                && store.prefetch_queued() == 0
            {
                return;
            }
            std::thread::yield_now();
        }
    };
    for i in 0..64 {
        let id = ExtentId(i);
        assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
        settled(&store);
    }
    let stats = store.stats();
    assert!(
        stats.prefetch_queued >= 60,
        "the window opened after two reads: {stats:?}"
    );
    // Ids 0 and 1 open the window; every later read finds its entry prefetched.
    assert_eq!(stats.cache.prefetch_used, 62, "{stats:?}");
    assert_eq!(stats.cache.prefetch_wasted, 0);
}

#[test]
fn prefetch_cancels_hints_whose_generation_changed_in_the_queue() {
    let gate = Arc::new(GateBackend {
        inner: MemBackend::new(1),
        gated: Mutex::new(None),
        entered: Barrier::new(2),
        release: Barrier::new(2),
    });
    let store = Store::new(gate.clone(), config().prefetch_workers(1).build().unwrap()).unwrap();
    let (a, b) = (ExtentId(1), ExtentId(2));
    let sa = store.write(a, &value(a, 1, 100)).unwrap();
    store.write(b, &value(b, 1, 100)).unwrap();
    *gate.gated.lock().unwrap() = Some(sa.location());
    // The worker takes a's hint and blocks in the backend; b's hint waits in the queue.
    assert_eq!(store.prefetch(&[a]), 1);
    gate.entered.wait();
    assert_eq!(store.prefetch(&[b]), 1);
    store.write(b, &value(b, 2, 100)).unwrap();
    gate.release.wait();
    while store.stats().prefetch_done + store.stats().prefetch_cancelled < 2 {
        std::thread::yield_now(); // until the worker has handled both hints
    }
    let stats = store.stats();
    assert_eq!(
        (stats.prefetch_done, stats.prefetch_cancelled),
        (1, 1),
        "{stats:?}"
    );
    assert_eq!(decode(&store.read(b).unwrap()), (b, 2));
}

#[test]
fn prefetch_never_blocks_when_off_or_full() {
    let cfg = config().prefetch_workers(0).build().unwrap();
    let store = Store::new(MemBackend::new(1), cfg).unwrap();
    let id = ExtentId(1);
    store.write(id, &value(id, 1, 100)).unwrap();
    assert_eq!(store.prefetch(&[id]), 0, "prefetch off: dropped");
    assert_eq!(store.stats().prefetch_dropped, 1);
    assert_eq!(
        store.prefetch(&[ExtentId(2)]),
        0,
        "vacant ids are not hinted"
    );

    // A full queue: the only worker is blocked in the backend, the queue holds one
    // hint, and further hints are dropped at once.
    let gate = Arc::new(GateBackend {
        inner: MemBackend::new(1),
        gated: Mutex::new(None),
        entered: Barrier::new(2),
        release: Barrier::new(2),
    });
    let cfg = config()
        .prefetch_workers(1)
        .prefetch_queue(1)
        .build()
        .unwrap();
    let store = Store::new(gate.clone(), cfg).unwrap();
    let ids: Vec<ExtentId> = (1..=4).map(ExtentId).collect();
    for &id in &ids {
        store.write(id, &value(id, 1, 100)).unwrap();
    }
    *gate.gated.lock().unwrap() = Some(store.snapshot(ids[0]).unwrap().location());
    assert_eq!(store.prefetch(&ids[..1]), 1);
    gate.entered.wait(); // the worker holds the first hint, blocked
    assert_eq!(
        store.prefetch(&ids[1..]),
        1,
        "one queued, two dropped, no blocking"
    );
    assert_eq!(store.stats().prefetch_dropped, 2);
    gate.release.wait();
}
