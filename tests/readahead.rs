//! Readahead and explicit prefetch ask for loads only where one is needed: no hint
//! for an extent whose current generation is cached.

mod common;

use common::{decode, value};
use extentmeta::{ExtentId, MemBackend, Store, StoreConfig};

fn store(prefetch_workers: usize) -> Store {
    let config = StoreConfig::builder()
        .devices(2)
        .cache_bytes(64 << 20)
        .prefetch_workers(prefetch_workers)
        .build()
        .expect("config");
    Store::new(MemBackend::new(2), config).expect("store")
}

/// A sequential scan of extents that are all cached queues no hint, however long
/// the scan (every read is a hit, and readahead has nothing to load).
#[test]
fn a_cached_scan_queues_no_hint() {
    let store = store(0);
    let ids: Vec<ExtentId> = (0..512).map(ExtentId).collect();
    for &id in &ids {
        store.write(id, &value(id, 1, 1024)).expect("write");
    }
    for &id in &ids {
        store.read(id).expect("first read caches");
    }
    let before = store.stats();
    for &id in &ids {
        assert_eq!(decode(&store.read(id).expect("read")), (id, 1));
    }
    let after = store.stats();
    assert_eq!(after.cache.hits - before.cache.hits, 512, "every read hit");
    assert_eq!(
        after.prefetch_queued, before.prefetch_queued,
        "no hint queued"
    );
    assert_eq!(
        after.prefetch_dropped, before.prefetch_dropped,
        "none dropped either"
    );
}

/// An explicit prefetch skips the cached extents and queues the others; a
/// rewrite makes the extent worth a hint again (its new generation is not cached).
#[test]
fn prefetch_skips_what_is_cached() {
    let store = store(1);
    let (cached, cold) = (ExtentId(1), ExtentId(2));
    store.write(cached, &value(cached, 1, 256)).expect("write");
    store.write(cold, &value(cold, 1, 256)).expect("write");
    store.read(cached).expect("cache it");
    let before = store.stats().prefetch_queued;
    assert_eq!(store.prefetch(&[cached, cold]), 1, "only the cold one");
    assert_eq!(store.stats().prefetch_queued - before, 1);
    store
        .write(cached, &value(cached, 2, 256))
        .expect("rewrite");
    assert_eq!(
        store.prefetch(&[cached]),
        1,
        "the new generation is not cached"
    );
}
