//! Readahead and explicit prefetch ask for loads only where one is needed: no hint
//! for an extent whose current generation is cached, and no readahead on a device
//! that answers faster than a handoff to a worker costs.

mod common;

use common::{decode, value};
use extentmeta::{Backend, ExtentId, Location, MemBackend, Store, StoreConfig};
use std::time::Duration;

/// A store whose readahead runs whatever the device's speed (the rules under
/// test here are about what is cached).
fn store(prefetch_workers: usize) -> Store {
    let config = StoreConfig::builder()
        .devices(2)
        .cache_bytes(64 << 20)
        .prefetch_workers(prefetch_workers)
        .readahead_min_read_us(0)
        .build()
        .expect("config");
    Store::new(MemBackend::new(2), config).expect("store")
}

/// Memory with `delay` added to every read.
#[derive(Debug)]
struct Slow {
    inner: MemBackend,
    delay: Duration,
}

impl Backend for Slow {
    fn device_count(&self) -> u16 {
        self.inner.device_count()
    }
    fn read_at(&self, location: Location, buf: &mut [u8]) -> extentmeta::Result<()> {
        std::thread::sleep(self.delay);
        self.inner.read_at(location, buf)
    }
    fn write_at(&self, location: Location, bytes: &[u8]) -> extentmeta::Result<()> {
        self.inner.write_at(location, bytes)
    }
    fn sync(&self, device: u16) -> extentmeta::Result<()> {
        self.inner.sync(device)
    }
}

/// A cold sequential scan of 256 extents, readahead running only while reads
/// take at least 1 ms: the number of readahead hints queued.
fn scan_hints(delay: Duration) -> u64 {
    let config = StoreConfig::builder()
        .devices(2)
        .cache_bytes(64 << 20)
        .prefetch_workers(2)
        .readahead_min_read_us(1_000)
        .build()
        .expect("config");
    let backend = Slow {
        inner: MemBackend::new(2),
        delay,
    };
    let store = Store::new(backend, config).expect("store");
    let ids: Vec<ExtentId> = (0..256).map(ExtentId).collect();
    for &id in &ids {
        store.write(id, &value(id, 1, 4096)).expect("write");
    }
    let before = store.stats().prefetch_queued;
    for &id in &ids {
        assert_eq!(decode(&store.read(id).expect("read")), (id, 1));
    }
    store.stats().prefetch_queued - before
}

/// Readahead only where it can hide something: none against memory, hints
/// against a device slower than the bound. The bound is far from both (memory
/// reads take about 1 µs optimised, 55 µs in a debug build; the slow device
/// sleeps 2 ms, never less), so the machine's load does not decide the outcome.
#[test]
fn readahead_runs_only_against_a_device_slower_than_its_bound() {
    assert_eq!(scan_hints(Duration::ZERO), 0, "memory: no readahead");
    assert!(
        scan_hints(Duration::from_millis(2)) > 100,
        "a 2 ms device: readahead"
    );
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
