//! Cache configuration: values heavier than a shard are cached, heavier than
//! the cache counted; a weigher and an
//! eviction listener can be installed, the policy is configurable.

mod common;

use common::{decode, value};
use extentmeta::cache::Evicted;
use extentmeta::{CachePolicy, ExtentId, MemBackend, Store, StoreConfig};
use std::sync::{Arc, Mutex};

/// A value heavier than a shard (`cache_bytes / cache_shards`) is cached apart,
/// with room the shards lend it: read three times, it is loaded once. Only a
/// value heavier than the whole cache is counted as oversized, not cached.
#[test]
fn a_value_heavier_than_a_shard_is_cached_and_one_heavier_than_the_cache_is_counted() {
    let config = |cache_bytes| {
        StoreConfig::builder()
            .cache_bytes(cache_bytes)
            .cache_shards(16)
            .prefetch_workers(0)
            .build()
            .unwrap()
    };
    let (id, small) = (ExtentId(1), ExtentId(2));
    // The case: 5 MiB in the default 64 MiB cache of 16 shards.
    let store = Store::new(MemBackend::new(1), config(64 << 20)).unwrap();
    store.write(id, &value(id, 1, 5 << 20)).unwrap();
    store.write(small, &value(small, 1, 4096)).unwrap();
    for _ in 0..3 {
        assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
        assert_eq!(decode(&store.read(small).unwrap()), (small, 1));
    }
    let c = store.stats().cache;
    assert_eq!((c.hits, c.inserted, c.oversized), (4, 2, 0), "{c:?}");
    // A new generation is never served from the old large entry.
    store.write(id, &value(id, 2, 5 << 20)).unwrap();
    assert_eq!(decode(&store.read(id).unwrap()), (id, 2));
    // Heavier than the whole cache: counted, read from the backend each time.
    let store = Store::new(MemBackend::new(1), config(1 << 20)).unwrap();
    let big = value(id, 1, 2 << 20);
    store.write(id, &big).unwrap();
    for _ in 0..3 {
        assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    }
    let c = store.stats().cache;
    assert_eq!((c.hits, c.inserted, c.oversized), (0, 0, 3), "{c:?}");
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
