//! Readahead and explicit prefetch ask for loads only where one is needed: no hint
//! for an extent whose current generation is cached, and no readahead on a device
//! that answers faster than a handoff to a worker costs.

mod common;

use common::fault_backend::{FaultBackend, Op};
use common::{decode, value, wait_until};
use extentmeta::{Backend, ExtentId, Location, MemBackend, Store, StoreConfig, TableConfig};
use std::sync::{Arc, mpsc};
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

/// A store of `extents` extents of 4 KiB, each written at generation 1, on a
/// fault backend, with one prefetch worker and readahead at any device speed.
fn one_worker_store(extents: u64) -> (Arc<FaultBackend>, Arc<Store>) {
    let backend = FaultBackend::new(1);
    let config = StoreConfig::builder()
        .devices(1)
        .prefetch_workers(1)
        .readahead_min_read_us(0)
        .table(
            TableConfig::builder()
                .max_extents(extents)
                .build()
                .expect("table"),
        )
        .build()
        .expect("config");
    let store = Arc::new(Store::new(Arc::clone(&backend), config).expect("store"));
    for id in (0..extents).map(ExtentId) {
        store.write(id, &value(id, 1, 4096)).expect("write");
    }
    (backend, store)
}

/// A store of extents 0..4 with one prefetch worker whose load of extent 2 is
/// held in the backend: reading 0 and 1 opened a window that claimed the loads
/// of 2 and 3 (8 KiB of 4 KiB extents), the worker holds 2, and 3 is queued.
/// Returns the backend's reads and the cache's `prefetch_used` at that point.
fn worker_held_on_extent_2() -> (
    Arc<FaultBackend>,
    Arc<Store>,
    common::fault_backend::Gate,
    u64,
    u64,
) {
    let (backend, store) = one_worker_store(4);
    let at = store.snapshot(ExtentId(2)).expect("snapshot").location();
    let gate = backend.gate_read_at(at);
    for id in (0..2).map(ExtentId) {
        assert_eq!(decode(&store.read(id).expect("read")), (id, 1));
    }
    gate.wait_entered();
    let reads = backend.calls(Op::Read);
    let used = store.stats().cache.prefetch_used;
    (backend, store, gate, reads, used)
}

/// Reads `id` on another thread; the result arrives on the receiver.
fn read_on_a_thread(
    store: &Arc<Store>,
    id: ExtentId,
) -> mpsc::Receiver<extentmeta::Result<extentmeta::Bytes>> {
    let (tx, rx) = mpsc::channel();
    let store = Arc::clone(store);
    std::thread::spawn(move || {
        let _ = tx.send(store.read(id));
    });
    rx
}

/// Reads `id` on another thread that must answer while the test's gates still
/// hold the worker: only a hang fails here, the deadline is far beyond any
/// read. `behind` names what the reader would be waiting for.
fn read_without_waiting(store: &Arc<Store>, id: ExtentId, behind: &str) -> extentmeta::Bytes {
    match read_on_a_thread(store, id).recv_timeout(Duration::from_secs(60)) {
        Ok(read) => read.expect("read"),
        Err(_) => panic!("the reader of {id:?} waits behind {behind}"),
    }
}

/// A reader that reaches an extent whose readahead hint is still queued waits on
/// that load instead of reading the extent itself: readahead claims the loads it
/// queues, as OS readahead locks the pages it reads ahead. Unclaimed, the reader
/// read extent 3 itself while the worker was still held on extent 2.
#[test]
fn a_reader_waits_on_the_load_readahead_claimed_for_it() {
    let (backend, store, gate, reads, used) = worker_held_on_extent_2();
    let joined = store.stats().cache.prefetch_joined;
    let reader = read_on_a_thread(&store, ExtentId(3));
    // The reader joined the claimed load or read the device itself; the worker
    // stays held until one of them happened.
    wait_until(|| store.stats().cache.prefetch_joined > joined || backend.calls(Op::Read) > reads);
    gate.release();
    let bytes = reader.recv().expect("the reader answers").expect("read");
    assert_eq!(decode(&bytes), (ExtentId(3), 1));
    assert_eq!(
        store.stats().cache.prefetch_used,
        used + 1,
        "the reader was served by the worker's load"
    );
    assert_eq!(
        backend.calls(Op::Read),
        reads + 1,
        "extent 3 was read once, by the worker"
    );
}

/// Closing the store drops the claimed loads still queued, so a reader waiting
/// on one is woken (and reads for itself, or is told the store closed) instead
/// of waiting for a worker that has stopped.
#[test]
fn close_wakes_a_reader_waiting_on_a_queued_claim() {
    let (_backend, store, gate, _, used) = worker_held_on_extent_2();
    let joined = store.stats().cache.prefetch_joined;
    let reader = read_on_a_thread(&store, ExtentId(3));
    wait_until(|| store.stats().cache.prefetch_joined > joined);
    let closer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.close())
    };
    // The store is stopping before the worker is let go: it then takes no
    // further hint, and the claim of extent 3 is left in the queue.
    wait_until(|| store.read(ExtentId(0)).is_err());
    gate.release();
    closer.join().expect("close returns").expect("close");
    // Only a hang fails here: the deadline is far beyond any wake-up.
    match reader.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(bytes)) => assert_eq!(decode(&bytes), (ExtentId(3), 1)),
        Ok(Err(err)) => assert_eq!(err.code(), "FPRE017", "{err}"),
        Err(_) => panic!("the reader still waits on a claim the closed store dropped"),
    }
    // The dropped claim served no read, though the reader had joined it.
    assert_eq!(store.stats().cache.prefetch_used, used);
}

/// A reader does not wait behind the prefetch queue: with the only worker held
/// reading extent 7 (an explicit prefetch) and a prefetch of extent 6 queued,
/// reading 0 and 1 claims the loads of 2 and 3 behind them. A reader of extent
/// 3 then takes its claim over and reads it itself while the worker is still
/// held; the worker later finds it cached and does not read it again. Waiting
/// on the claim, this reader would wait for extents 7, 6 and 2 to load first.
#[test]
fn a_reader_takes_over_a_claim_queued_behind_other_hints() {
    let (backend, store) = one_worker_store(8);
    let at = store.snapshot(ExtentId(7)).expect("snapshot").location();
    let gate = backend.gate_read_at(at);
    assert_eq!(store.prefetch(&[ExtentId(7)]), 1);
    gate.wait_entered();
    assert_eq!(store.prefetch(&[ExtentId(6)]), 1);
    for id in (0..2).map(ExtentId) {
        assert_eq!(decode(&store.read(id).expect("read")), (id, 1));
    }
    let (reads, used, done) = (
        backend.calls(Op::Read),
        store.stats().cache.prefetch_used,
        store.stats().prefetch_done,
    );
    let bytes = read_without_waiting(&store, ExtentId(3), "the held worker's queue");
    assert_eq!(decode(&bytes), (ExtentId(3), 1));
    assert_eq!(backend.calls(Op::Read), reads + 1, "read by the reader");
    assert_eq!(store.stats().cache.prefetch_used, used, "not by a worker");
    // A second read of extent 3 from the device now fails, counted.
    let third = store.snapshot(ExtentId(3)).expect("snapshot").location();
    backend.fail_reads_at(third, u32::MAX);
    let abandoned = store.stats().prefetch_abandoned;
    gate.release();
    // The worker loads 7, 6, 2 and what reading 3 asked for, and finds 3
    // cached.
    wait_until(|| {
        let s = store.stats();
        s.prefetch_done + s.prefetch_abandoned + s.prefetch_cancelled == s.prefetch_queued
    });
    let stats = store.stats();
    assert!(stats.prefetch_done >= done + 4, "{stats:?}");
    assert_eq!(
        stats.prefetch_abandoned, abandoned,
        "extent 3 was read again"
    );
    assert_eq!(
        decode(&store.read(ExtentId(3)).expect("cached")),
        (ExtentId(3), 1)
    );
    assert_eq!(
        decode(&store.read(ExtentId(2)).expect("read")),
        (ExtentId(2), 1)
    );
    assert_eq!(
        store.stats().cache.prefetch_used,
        used + 1,
        "2 from the worker"
    );
}

/// A worker takes the hints queued at once but runs a claim that does not
/// follow the previous hint's id as a run of its own, and a claim in a later
/// run still counts as queued: with the worker held reading extent 2 (a
/// prefetch taken together with the claims of extents 290 and 291, more than a
/// merged read's span away), a reader of extent 291 takes its claim over
/// instead of waiting behind the read of 2. Were the batch one run, its reads
/// would run in device order and the reader would wait for them.
#[test]
fn a_reader_takes_over_a_claim_behind_another_run_of_the_workers_batch() {
    let (backend, store) = one_worker_store(300);
    let location = |id: u64| store.snapshot(ExtentId(id)).expect("snapshot").location();
    // Four reads slower than the 50 µs that merged reads need (a sleep of
    // 100 µs in the backend): the worker now takes what is queued at once.
    // None opens a window (not sequential).
    backend.set_read_delay(Duration::from_micros(100));
    for id in [15, 13, 11, 9].map(ExtentId) {
        assert_eq!(decode(&store.read(id).expect("read")), (id, 1));
    }
    let first = backend.gate_read_at(location(6));
    assert_eq!(store.prefetch(&[ExtentId(6)]), 1);
    first.wait_entered();
    let second = backend.gate_read_at(location(2));
    assert_eq!(store.prefetch(&[ExtentId(2)]), 1);
    // Reading 288 and 289 claims the loads of 290 and 291, queued behind 2.
    for id in (288..290).map(ExtentId) {
        assert_eq!(decode(&store.read(id).expect("read")), (id, 1));
    }
    first.release();
    second.wait_entered();
    let reads = backend.calls(Op::Read);
    let bytes = read_without_waiting(&store, ExtentId(291), "the worker's read of extent 2");
    assert_eq!(decode(&bytes), (ExtentId(291), 1));
    assert_eq!(backend.calls(Op::Read), reads + 1, "read by the reader");
    second.release();
}

/// Without prefetch workers readahead asks for nothing: a hint nobody loads
/// would only be dropped (and, its ids handed back, asked for again by every
/// read of the scan).
#[test]
fn without_workers_a_cold_scan_offers_no_hint() {
    let config = StoreConfig::builder()
        .devices(1)
        .cache_bytes(0)
        .prefetch_workers(0)
        .readahead_min_read_us(0)
        .build()
        .expect("config");
    let store = Store::new(MemBackend::new(1), config).expect("store");
    for id in (0..64).map(ExtentId) {
        store.write(id, &value(id, 1, 1024)).expect("write");
    }
    for id in (0..64).map(ExtentId) {
        assert_eq!(decode(&store.read(id).expect("read")), (id, 1));
    }
    let stats = store.stats();
    assert_eq!((stats.prefetch_queued, stats.prefetch_dropped), (0, 0));
}
