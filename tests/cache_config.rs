//! Cache configuration (issue 10): oversized values are counted, a weigher and an
//! eviction listener can be installed, the policy is configurable.

mod common;

use common::{decode, value};
use extentmeta::cache::Evicted;
use extentmeta::{CachePolicy, ExtentId, MemBackend, Store, StoreConfig};
use std::sync::{Arc, Mutex};

#[test]
fn an_oversized_value_is_counted_not_silently_uncached() {
    let id = ExtentId(1);
    let big = value(id, 1, 100 << 10);
    let config = StoreConfig::builder()
        .cache_bytes(1 << 20)
        .cache_shards(16)
        .prefetch_workers(0)
        .build()
        .unwrap();
    let store = Store::new(MemBackend::new(1), config).unwrap();
    store.write(id, &big).unwrap();
    for _ in 0..3 {
        assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    }
    let c = store.stats().cache;
    assert_eq!((c.hits, c.inserted, c.oversized), (0, 0, 3), "{c:?}");
    // One shard holds the whole megabyte: the value is cached.
    let config = StoreConfig::builder()
        .cache_bytes(1 << 20)
        .cache_shards(1)
        .prefetch_workers(0)
        .build()
        .unwrap();
    let store = Store::new(MemBackend::new(1), config).unwrap();
    store.write(id, &big).unwrap();
    for _ in 0..3 {
        assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    }
    let c = store.stats().cache;
    assert_eq!((c.hits, c.inserted, c.oversized), (2, 1, 0), "{c:?}");
}

#[test]
fn a_weigher_decides_what_fits() {
    // Extent 5 weighs more than the cache; the rest weigh their length.
    let config = StoreConfig::builder()
        .cache_bytes(64 << 10)
        .cache_shards(1)
        .prefetch_workers(0) // no readahead loads: the counts below are exact
        .cache_weigher(|id, bytes| {
            if id.0 == 5 {
                1 << 30
            } else {
                bytes.len() as u64
            }
        })
        .build()
        .unwrap();
    let store = Store::new(MemBackend::new(1), config).unwrap();
    for i in 1..=6 {
        store
            .write(ExtentId(i), &value(ExtentId(i), 1, 256))
            .unwrap();
    }
    for _ in 0..2 {
        for i in 1..=6 {
            assert_eq!(decode(&store.read(ExtentId(i)).unwrap()), (ExtentId(i), 1));
        }
    }
    let c = store.stats().cache;
    assert_eq!((c.inserted, c.oversized, c.hits), (5, 2, 5), "{c:?}");
}

#[test]
fn the_eviction_listener_sees_every_entry_evicted_for_space() {
    let evicted: Arc<Mutex<Vec<Evicted>>> = Arc::default();
    let sink = Arc::clone(&evicted);
    let config = StoreConfig::builder()
        .cache_bytes(16 << 10)
        .cache_shards(1)
        .prefetch_workers(0)
        .cache_policy(CachePolicy::builder().build().unwrap())
        .cache_eviction_listener(move |e: &Evicted| sink.lock().expect("lock").push(e.clone()))
        .build()
        .unwrap();
    let store = Store::new(MemBackend::new(1), config).unwrap();
    for i in 0..64 {
        let id = ExtentId(i);
        store.write(id, &value(id, 1, 1024)).unwrap();
        store.read(id).unwrap();
    }
    let stats = store.stats().cache;
    let evicted = evicted.lock().unwrap();
    assert!(stats.evicted > 0);
    assert_eq!(evicted.len() as u64, stats.evicted);
    for e in evicted.iter() {
        assert_eq!(
            decode(&e.bytes),
            (e.extent, e.generation),
            "the evicted bytes are its own"
        );
        assert!(!e.unread_prefetch);
    }
}

/// Readahead can be switched off on its own: explicit prefetch still works.
#[test]
fn readahead_switches_off_without_switching_off_prefetch() {
    let config = StoreConfig::builder().readahead(false).build().unwrap();
    let store = Store::new(MemBackend::new(1), config).unwrap();
    for i in 0..64 {
        store
            .write(ExtentId(i), &value(ExtentId(i), 1, 64))
            .unwrap();
    }
    for i in 0..32 {
        decode(&store.read(ExtentId(i)).unwrap());
    }
    assert_eq!(
        store.stats().prefetch_queued,
        0,
        "a sequential scan queued nothing"
    );
    assert_eq!(store.prefetch(&[ExtentId(40), ExtentId(41)]), 2);
}
