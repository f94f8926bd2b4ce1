//! The read/write/prefetch protocol through the blocking `Store`.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::fault_backend::{FaultBackend, Inject, Op};
use common::{decode, one_worker, value, wait_until};
use extentmeta::{Error, ExtentId, MemBackend, Store, StoreConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// `writes` counts the writes begun, in a call and in a batch alike: one
/// refused before it began (too large for the store) is in neither count.
#[test]
fn a_write_refused_before_it_begins_is_not_counted() {
    let config = config().max_extent_bytes(4096).build().unwrap();
    let store = Store::new(MemBackend::new(1), config).unwrap();
    let id = ExtentId(2);
    assert_eq!(
        store.write(id, &value(id, 1, 8192)).unwrap_err().code(),
        "FPRE016",
        "too large"
    );
    let big = value(id, 1, 8192);
    assert!(store.write_batch(&[(id, &big[..])]).is_err());
    store.write(id, &value(id, 1, 64)).unwrap();
    let stats = store.stats();
    assert_eq!((stats.writes, stats.write_ok), (1, 1));
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

/// A write longer than the limit is refused before its bytes are copied (a 2^32
/// byte write once took 13 s and 4 GiB before FPRE016); with a small configured
/// limit the refusal is visible without a huge buffer.
#[test]
fn a_write_longer_than_the_limit_is_refused_before_it_is_copied() {
    let config = StoreConfig::builder()
        .max_extent_bytes(100)
        .build()
        .unwrap();
    let store = Store::new(MemBackend::new(1), config).unwrap();
    let id = ExtentId(1);
    let err = store.write(id, &value(id, 1, 101)).unwrap_err();
    assert_eq!(
        err,
        Error::TooLarge {
            length: 101,
            max: 100
        }
    );
    assert_eq!(err.code(), "FPRE016");
    assert_eq!(
        store.snapshot(id).unwrap().state(),
        extentmeta::State::Vacant,
        "nothing was begun"
    );
    store.write(id, &value(id, 1, 100)).unwrap();
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
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

#[test]
fn max_extent_bytes_is_bounded_by_the_hard_maximum() {
    let hard = extentmeta::store::MAX_EXTENT_BYTES;
    assert_eq!(
        hard,
        (1 << 32) - 1,
        "a location describes at most 2^32 - 1 bytes"
    );
    for bad in [0, hard + 1] {
        let err = StoreConfig::builder()
            .max_extent_bytes(bad)
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidConfig {
                field: "max_extent_bytes",
                ..
            }
        ));
    }
}

#[test]
fn generation_tagged_cache_rejects_a_fill_superseded_while_it_loaded() {
    let backend = FaultBackend::new(1);
    let store = Store::new(
        Arc::clone(&backend),
        config().prefetch_workers(0).build().unwrap(),
    )
    .unwrap();
    let id = ExtentId(11);
    let g1 = store.write(id, &value(id, 1, 4096)).unwrap();
    let gate = backend.gate_read_at(g1.location());

    std::thread::scope(|s| {
        // The loader: its read of generation 1 blocks inside the backend.
        let loader = s.spawn(|| store.read(id));
        gate.wait_entered();
        // A waiter joins the same load (same generation, single flight).
        let waiter = s.spawn(|| store.read(id));
        while store.stats().cache.misses < 2 {
            std::thread::yield_now(); // until the waiter has joined the flight
        }
        // Generation 2 commits while generation 1 is still loading.
        let g2 = store.write(id, &value(id, 2, 4096)).unwrap();
        assert_eq!(g2.generation(), 2);
        gate.release();
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
    let backend = FaultBackend::new(1);
    let store = Store::new(
        Arc::clone(&backend),
        config().prefetch_workers(0).build().unwrap(),
    )
    .unwrap();
    let id = ExtentId(6);
    store.write(id, &value(id, 1, 200)).unwrap();
    let sync = backend.gate_next(Op::Sync);
    std::thread::scope(|s| {
        let writer = s.spawn(|| store.write(id, &value(id, 2, 200)));
        sync.wait_entered(); // generation 2 is written, its acknowledgment late
        assert!(store.snapshot(id).unwrap().write_pending());
        for _ in 0..3 {
            assert_eq!(
                decode(&store.read(id).unwrap()),
                (id, 1),
                "pending bytes served"
            );
        }
        store.prefetch(&[id]);
        sync.release();
        assert_eq!(writer.join().unwrap().unwrap().generation(), 2);
    });
    assert_eq!(decode(&store.read(id).unwrap()), (id, 2));
}

#[test]
fn pending_is_never_cached_a_failed_write_leaves_old_bytes() {
    let backend = FaultBackend::new(1);
    // The second sync (the second write's acknowledgment) fails.
    backend.inject_nth(Op::Sync, 2, Inject::Fail);
    let store = Store::new(backend, config().build().unwrap()).unwrap();
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
        // Readahead against memory too: the window's mechanics are under test,
        // not whether the device is worth it (tests/readahead.rs).
        .readahead_min_read_us(0)
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
    let backend = FaultBackend::new(1);
    let store = Store::new(
        Arc::clone(&backend),
        config().prefetch_workers(1).build().unwrap(),
    )
    .unwrap();
    let (a, b) = (ExtentId(1), ExtentId(2));
    let sa = store.write(a, &value(a, 1, 100)).unwrap();
    store.write(b, &value(b, 1, 100)).unwrap();
    let gate = backend.gate_read_at(sa.location());
    // The worker takes a's hint and blocks in the backend; b's hint waits in the queue.
    assert_eq!(store.prefetch(&[a]), 1);
    gate.wait_entered();
    assert_eq!(store.prefetch(&[b]), 1);
    store.write(b, &value(b, 2, 100)).unwrap();
    gate.release();
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
    let backend = FaultBackend::new(1);
    let cfg = config()
        .prefetch_workers(1)
        .prefetch_queue(1)
        .build()
        .unwrap();
    let store = Store::new(Arc::clone(&backend), cfg).unwrap();
    let ids: Vec<ExtentId> = (1..=4).map(ExtentId).collect();
    for &id in &ids {
        store.write(id, &value(id, 1, 100)).unwrap();
    }
    let gate = backend.gate_read_at(store.snapshot(ids[0]).unwrap().location());
    assert_eq!(store.prefetch(&ids[..1]), 1);
    gate.wait_entered(); // the worker holds the first hint, blocked
    assert_eq!(
        store.prefetch(&ids[1..]),
        1,
        "one queued, two dropped, no blocking"
    );
    assert_eq!(store.stats().prefetch_dropped, 2);
    gate.release();
}

/// A panicking backend once killed the only prefetch worker, and every later
/// prefetch was silently dropped (`prefetch()` queued 0).
#[test]
fn a_backend_panic_during_prefetch_is_contained_and_prefetch_keeps_working() {
    let backend = FaultBackend::new(2);
    let store = Store::new(Arc::clone(&backend), one_worker(16)).unwrap();
    let ids: Vec<ExtentId> = (0..4).map(ExtentId).collect();
    for &id in &ids {
        store.write(id, &value(id, 1, 64)).unwrap();
    }
    backend.inject_nth(Op::Read, 1, Inject::Panic);
    assert_eq!(store.prefetch(&ids[..1]), 1);
    wait_until(|| store.stats().prefetch_abandoned == 1);
    // The worker is alive: these are queued and loaded.
    assert_eq!(store.prefetch(&ids[1..]), 3, "prefetch still queues");
    wait_until(|| store.stats().prefetch_done == 3);
    let stats = store.stats();
    assert_eq!(
        stats.prefetch_abandoned, 1,
        "the failed load was counted once"
    );
    assert_eq!(stats.backend_panics, 1, "the panic was counted once");
    // The abandoned load released its fill token: the extent reads normally.
    for &id in &ids {
        assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    }
}

/// `warm` never counts as a demand hit (two warms and no read once gave hits 1,
/// prefetch_used 1); a prefetched entry counts as used only when a demand read
/// reads it.
#[test]
fn warm_never_counts_as_a_demand_hit() {
    let store = Store::new(MemBackend::new(1), one_worker(16)).unwrap();
    let id = ExtentId(2);
    store.write(id, &value(id, 1, 128)).unwrap();
    assert!(store.warm(id).unwrap(), "loaded");
    assert!(store.warm(id).unwrap(), "found cached");
    let cache = store.stats().cache;
    assert_eq!((cache.hits, cache.prefetch_used), (0, 0), "{cache:?}");
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    let cache = store.stats().cache;
    assert_eq!(
        (cache.hits, cache.prefetch_used),
        (1, 1),
        "the demand read used the prefetched entry: {cache:?}"
    );
}
