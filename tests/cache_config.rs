//! Cache configuration: values heavier than a shard are cached, heavier than
//! the cache counted; a weigher and an
//! eviction listener can be installed, the policy is configurable.

mod common;

use common::{decode, value};
use extentmeta::cache::Evicted;
use extentmeta::{Cache, CachePolicy, ExtentId, MemBackend, Priority, Store, StoreConfig};
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

/// Any shard count is taken: a huge one is capped at `cache::MAX_SHARDS`
/// instead of overflowing its rounding (a panic) or allocating shards by the
/// billion (an abort), and the cache still caches.
#[test]
fn any_shard_count_makes_a_working_cache() {
    for shards in [0, 3, extentmeta::cache::MAX_SHARDS + 1, usize::MAX] {
        let cache = Cache::new(64 << 20, shards);
        let id = ExtentId(shards as u64 % 1000);
        let bytes = value(id, 1, 100);
        let extentmeta::cache::Lookup::Load(token) = cache.lookup(id, 1, Priority::Demand) else {
            panic!("{shards} shards: a first lookup loads");
        };
        cache.complete(token, Ok(extentmeta::Bytes::from(bytes.clone())), || true);
        let extentmeta::cache::Lookup::Hit(hit) = cache.lookup(id, 1, Priority::Demand) else {
            panic!("{shards} shards: the fill is cached");
        };
        assert_eq!(&hit[..], &bytes[..], "{shards} shards");
    }
}

/// A write far past what memory holds is a typed error from `MemBackend`,
/// not an aborted process. (2^60 bytes: past any address space, so the
/// allocator refuses it whatever the machine's overcommit setting.)
#[test]
fn a_memory_backend_refuses_a_write_it_cannot_hold() {
    let backend = extentmeta::MemBackend::new(1);
    let far = extentmeta::Location::new(0, 1 << 60, 1);
    let err = extentmeta::Backend::write_at(&backend, far, b"x").unwrap_err();
    assert_eq!(err.code(), "FPRE009", "{err}");
    let err = backend.corrupt(far, |b| b[0] = 1).unwrap_err();
    assert_eq!(err.code(), "FPRE009", "{err}");
    assert_eq!(backend.device_len(0), 0);
}

/// A weigher that panics is contained: the read still returns its bytes, the
/// value is not cached (counted oversized), and the store goes on.
#[test]
fn a_panicking_weigher_costs_the_caching_not_the_read() {
    let config = StoreConfig::builder()
        .cache_shards(1)
        .prefetch_workers(0)
        .cache_weigher(|id, bytes| {
            assert!(id.0 != 3, "the engine's weigher fails on extent 3");
            bytes.len() as u64
        })
        .build()
        .unwrap();
    let store = Store::new(MemBackend::new(1), config).unwrap();
    for i in 1..=4 {
        store
            .write(ExtentId(i), &value(ExtentId(i), 1, 256))
            .unwrap();
    }
    for _ in 0..2 {
        for i in 1..=4 {
            assert_eq!(decode(&store.read(ExtentId(i)).unwrap()), (ExtentId(i), 1));
        }
    }
    let c = store.stats().cache;
    assert_eq!((c.inserted, c.oversized, c.hits), (3, 2, 3), "{c:?}");
}
