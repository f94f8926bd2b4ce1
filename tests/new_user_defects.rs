//! Defects a new user found (issue 9), one test each, named after the defect.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{decode, value};
use extentmeta::{Backend, Bytes, ExtentId, Location, MemBackend, Result, Store, StoreConfig};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A memory backend that counts reads, can make them slow, and can panic once.
#[derive(Debug)]
struct Probe {
    mem: MemBackend,
    reads: AtomicU64,
    read_delay_us: AtomicU64,
    panic_next_read: AtomicBool,
    /// Replicas served by `good_copy`, by (extent, generation).
    replicas: Mutex<HashMap<(ExtentId, u64), Vec<u8>>>,
    /// If set, the next `good_copy` reports on `entered` and blocks until `release`.
    gate: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
    /// If set, the next `sync` waits on this barrier (holds a write pending).
    sync_gate: Mutex<Option<Arc<std::sync::Barrier>>>,
}

impl Probe {
    fn new() -> Arc<Self> {
        Arc::new(Probe {
            mem: MemBackend::new(2),
            reads: AtomicU64::new(0),
            read_delay_us: AtomicU64::new(0),
            panic_next_read: AtomicBool::new(false),
            replicas: Mutex::new(HashMap::new()),
            gate: Mutex::new(None),
            sync_gate: Mutex::new(None),
        })
    }
}

impl Backend for Probe {
    fn device_count(&self) -> u16 {
        self.mem.device_count()
    }
    fn read_at(&self, location: Location, buf: &mut [u8]) -> Result<()> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.panic_next_read.swap(false, Ordering::SeqCst) {
            panic!("injected backend panic (test)");
        }
        let delay = self.read_delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        self.mem.read_at(location, buf)
    }
    fn write_at(&self, location: Location, bytes: &[u8]) -> Result<()> {
        self.mem.write_at(location, bytes)
    }
    fn sync(&self, device: u16) -> Result<()> {
        let gate = self.sync_gate.lock().unwrap().take();
        if let Some(gate) = gate {
            gate.wait();
        }
        self.mem.sync(device)
    }
    fn good_copy(&self, extent: ExtentId, generation: u64) -> Option<Bytes> {
        let gate = self.gate.lock().unwrap().take();
        if let Some((entered, release)) = gate {
            entered.send(()).unwrap();
            release.recv().unwrap();
        }
        let replicas = self.replicas.lock().unwrap();
        replicas
            .get(&(extent, generation))
            .map(|v| Bytes::from(&v[..]))
    }
}

fn one_worker(queue: usize) -> StoreConfig {
    StoreConfig::builder()
        .cache_bytes(64 << 20)
        .prefetch_workers(1)
        .prefetch_queue(queue)
        .build()
        .unwrap()
}

/// Defect 1: dropping the store did not stop prefetch; the worker loaded every
/// queued hint (about 1 000 loads of 3 ms) before it exited.
#[test]
fn defect1_drop_stops_prefetch_queued_hints_are_not_loaded() {
    let probe = Probe::new();
    let store = Store::new(Arc::clone(&probe), one_worker(1000)).unwrap();
    let ids: Vec<ExtentId> = (0..1000).map(ExtentId).collect();
    for &id in &ids {
        store.write(id, &value(id, 1, 64)).unwrap();
    }
    probe.read_delay_us.store(3_000, Ordering::SeqCst);
    assert_eq!(store.prefetch(&ids), 1000, "every hint fits the queue");
    let before = probe.reads.load(Ordering::SeqCst);
    drop(store);
    let loaded = probe.reads.load(Ordering::SeqCst) - before;
    // The worker may have a load in flight and may pick up one more hint before it
    // sees the flag: never the rest of the queue.
    assert!(
        loaded <= 4,
        "drop loaded {loaded} queued hints; it must stop after the load in flight"
    );
}

/// Defect 2: a panicking backend killed the only prefetch worker, and every later
/// prefetch was silently dropped (`prefetch()` queued 0).
#[test]
fn defect2_a_backend_panic_during_prefetch_is_contained_and_prefetch_keeps_working() {
    let probe = Probe::new();
    let store = Store::new(Arc::clone(&probe), one_worker(16)).unwrap();
    let ids: Vec<ExtentId> = (0..4).map(ExtentId).collect();
    for &id in &ids {
        store.write(id, &value(id, 1, 64)).unwrap();
    }
    probe.panic_next_read.store(true, Ordering::SeqCst);
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

/// Polls `done` (bounded: 10 s) so a test waits on background work without timing
/// deciding its outcome.
fn wait_until(done: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("background work did not finish within 10 s");
}

/// Writes `id` at generation 1 with a replica, then corrupts its media copy so that
/// verification finds a persistent fault.
fn faulty_extent(probe: &Probe, store: &Store, id: ExtentId) {
    let bytes = value(id, 1, 256);
    let snapshot = store.write(id, &bytes).unwrap();
    probe.replicas.lock().unwrap().insert((id, 1), bytes);
    probe
        .mem
        .corrupt(snapshot.location(), |b| b[40] ^= 0xff)
        .unwrap();
}

/// Arms the backend's `good_copy` gate: returns (entered, release).
fn arm_gate(probe: &Probe) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    *probe.gate.lock().unwrap() = Some((entered_tx, release_rx));
    (entered_rx, release_tx)
}

/// Defect 3a: a quarantine whose remap lost the race to a write was not counted
/// (quarantines 0 with fpre004 1).
#[test]
fn defect3_a_quarantine_is_counted_when_a_write_wins_its_remap() {
    let probe = Probe::new();
    let store = Arc::new(Store::new(Arc::clone(&probe), one_worker(16)).unwrap());
    let id = ExtentId(5);
    faulty_extent(&probe, &store, id);
    let (entered, release) = arm_gate(&probe);
    let verifier = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.verify(id))
    };
    entered.recv().unwrap();
    assert_eq!(
        store.snapshot(id).unwrap().state(),
        extentmeta::State::Quarantined
    );
    store.write(id, &value(id, 2, 256)).unwrap();
    release.send(()).unwrap();
    let _ = verifier.join().unwrap();
    let stats = store.stats();
    assert_eq!(stats.fpre004, 1);
    assert_eq!(stats.quarantines, 1, "the quarantine is counted: {stats:?}");
    assert_eq!(stats.remaps, 0, "the write won: nothing was remapped");
    assert_eq!(decode(&store.read(id).unwrap()), (id, 2));
}

/// Defect 3b: when a second verify finished the remap first, the first verify's
/// quarantine was not counted (quarantines 0, remaps 1).
#[test]
fn defect3_a_quarantine_is_counted_once_when_another_verify_remaps_first() {
    let probe = Probe::new();
    let store = Arc::new(Store::new(Arc::clone(&probe), one_worker(16)).unwrap());
    let id = ExtentId(6);
    faulty_extent(&probe, &store, id);
    let (entered, release) = arm_gate(&probe);
    let first = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.verify(id))
    };
    entered.recv().unwrap();
    // The second verify finds the record quarantined and remaps it.
    let _ = store.verify(id);
    assert_eq!(
        store.snapshot(id).unwrap().state(),
        extentmeta::State::Durable
    );
    release.send(()).unwrap();
    let _ = first.join().unwrap();
    let stats = store.stats();
    assert_eq!(
        stats.quarantines, 1,
        "one quarantine, counted once: {stats:?}"
    );
    assert_eq!(stats.remaps, 1);
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
}

/// Defect 5: a huge write was copied whole before its length was checked (a 2^32
/// byte write took 13 s and 4 GiB before FPRE016). The check now comes first; with
/// a small configured limit the refusal is visible without a huge buffer.
#[test]
fn defect5_a_write_longer_than_the_limit_is_refused_before_it_is_copied() {
    let config = StoreConfig::builder()
        .max_extent_bytes(100)
        .build()
        .unwrap();
    let store = Store::new(MemBackend::new(1), config).unwrap();
    let id = ExtentId(1);
    let err = store.write(id, &value(id, 1, 101)).unwrap_err();
    assert_eq!(
        err,
        extentmeta::Error::TooLarge {
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
fn defect5_max_extent_bytes_is_bounded_by_the_hard_maximum() {
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
            extentmeta::Error::InvalidConfig {
                field: "max_extent_bytes",
                ..
            }
        ));
    }
}

/// Defect 6: `warm` counted as a demand hit (two warms and no read gave hits 1,
/// prefetch_used 1); a prefetched entry counts as used only when a demand read
/// reads it.
#[test]
fn defect6_warm_never_counts_as_a_demand_hit() {
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

/// Defect 7a: `verify` returned `Err(FPRE004)` even when it then remapped the
/// extent; it now answers `Ok(Verdict::Repaired)` with the faulted location and the
/// remapped record, and FPRE004 stays an error only when the extent could not be
/// repaired.
#[test]
fn defect7_verify_that_remapped_the_extent_says_repaired() {
    let probe = Probe::new();
    let store = Store::new(Arc::clone(&probe), one_worker(16)).unwrap();
    let id = ExtentId(7);
    faulty_extent(&probe, &store, id);
    let before = store.snapshot(id).unwrap();
    let verdict = store.verify(id).unwrap();
    let extentmeta::Verdict::Repaired { faulted, remapped } = verdict else {
        panic!("expected Repaired, got {verdict:?}");
    };
    assert_eq!(faulted, before.location());
    assert_eq!(
        remapped,
        store.snapshot(id).unwrap(),
        "the committed record"
    );
    assert_ne!(remapped.location(), faulted);
    assert_eq!(
        remapped.generation(),
        1,
        "remap moves bytes, never changes them"
    );
    let stats = store.stats();
    assert_eq!((stats.fpre004, stats.quarantines, stats.remaps), (1, 1, 1));
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1));

    // No good copy: the fault persists, FPRE004 is the answer.
    let id = ExtentId(8);
    let s = store.write(id, &value(id, 1, 256)).unwrap();
    probe.mem.corrupt(s.location(), |b| b[40] ^= 0xff).unwrap();
    // No replica, and the cache holds no copy of a never-read extent.
    let err = store.verify(id).unwrap_err();
    assert_eq!(err.code(), "FPRE004");
    assert_eq!(
        store.snapshot(id).unwrap().state(),
        extentmeta::State::Quarantined
    );
}

/// Defect 7b: `compact` during a pending write returned `Ok(Aborted)` while the
/// docs promised FPRE002. The contract is `Ok(Aborted)` (the record is busy: a
/// race the caller retries, not an illegal request); FPRE002 stays for an extent
/// that cannot be compacted at all (vacant).
#[test]
fn defect7_compact_during_a_pending_write_is_aborted_and_a_vacant_extent_is_fpre002() {
    let probe = Probe::new();
    let store = Arc::new(Store::new(Arc::clone(&probe), one_worker(16)).unwrap());
    let id = ExtentId(9);
    store.write(id, &value(id, 1, 256)).unwrap();
    // Hold a write pending: its sync blocks in the backend until the gate opens.
    let gate = Arc::new(std::sync::Barrier::new(2));
    *probe.sync_gate.lock().unwrap() = Some(Arc::clone(&gate));
    let blocker = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            store.write(id, &value(id, 2, 256)).unwrap();
        })
    };
    wait_until(|| store.snapshot(id).unwrap().write_pending());
    assert_eq!(
        store.compact(id).unwrap(),
        extentmeta::CompactOutcome::Aborted
    );
    gate.wait();
    blocker.join().unwrap();
    assert_eq!(decode(&store.read(id).unwrap()), (id, 2));
    let err = store.compact(ExtentId(10)).unwrap_err();
    assert_eq!(err.code(), "FPRE002", "{err}");
}
