//! What an engine needs around the store (issue 10): close, serialized writes,
//! events, latency histograms.

mod common;

use common::{decode, value};
use extentmeta::events::{Event, Relocation};
use extentmeta::{
    Backend, Error, ExtentId, Location, MemBackend, Result, Store, StoreConfig, Verdict,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// A backend whose syncs block while the gate is closed, and that counts reads.
#[derive(Default)]
struct Gate {
    inner: Option<MemBackend>,
    closed: Mutex<bool>,
    opened: Condvar,
    syncs_waiting: AtomicU64,
    reads: AtomicU64,
    slow_reads: AtomicBool,
}

impl Gate {
    fn new(devices: u16) -> Arc<Gate> {
        Arc::new(Gate {
            inner: Some(MemBackend::new(devices)),
            ..Gate::default()
        })
    }
    fn close(&self) {
        *self.closed.lock().expect("lock") = true;
    }
    fn open(&self) {
        *self.closed.lock().expect("lock") = false;
        self.opened.notify_all();
    }
    fn mem(&self) -> &MemBackend {
        self.inner.as_ref().expect("backend")
    }
}

impl Backend for Gate {
    fn device_count(&self) -> u16 {
        self.mem().device_count()
    }
    fn read_at(&self, l: Location, buf: &mut [u8]) -> Result<()> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.slow_reads.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        self.mem().read_at(l, buf)
    }
    fn write_at(&self, l: Location, bytes: &[u8]) -> Result<()> {
        self.mem().write_at(l, bytes)
    }
    fn sync(&self, device: u16) -> Result<()> {
        let mut closed = self.closed.lock().expect("lock");
        self.syncs_waiting.fetch_add(1, Ordering::SeqCst);
        while *closed {
            closed = self.opened.wait(closed).expect("wait");
        }
        self.syncs_waiting.fetch_sub(1, Ordering::SeqCst);
        drop(closed);
        self.mem().sync(device)
    }
}

#[test]
fn after_close_every_operation_returns_shutdown_and_close_is_idempotent() {
    let store = Store::new(MemBackend::new(1), StoreConfig::default()).unwrap();
    let id = ExtentId(3);
    store.write(id, &value(id, 1, 64)).unwrap();
    store.close().unwrap();
    store.close().unwrap();
    let code = |r: Result<()>| r.unwrap_err().code();
    assert_eq!(code(store.read(id).map(drop)), "FPRE017");
    assert_eq!(code(store.write(id, b"x").map(drop)), "FPRE017");
    assert_eq!(code(store.try_write(id, b"x").map(drop)), "FPRE017");
    assert_eq!(code(store.delete(id).map(drop)), "FPRE017");
    assert_eq!(code(store.compact(id).map(drop)), "FPRE017");
    assert_eq!(code(store.verify(id).map(drop)), "FPRE017");
    assert_eq!(code(store.warm(id).map(drop)), "FPRE017");
    assert_eq!(store.prefetch(&[id]), 0);
    assert_eq!(
        store.snapshot(id).unwrap().generation(),
        1,
        "metadata stays readable"
    );
}

/// Close is prompt: queued hints are dropped, not loaded. Counted in backend
/// reads, not in time: with one worker, at most the load in flight (one read)
/// happens after close begins.
#[test]
fn close_drops_queued_prefetch_instead_of_loading_it() {
    let backend = Gate::new(1);
    let config = StoreConfig::builder()
        .prefetch_workers(1)
        .prefetch_queue(1000)
        .build()
        .unwrap();
    let store = Store::new(Arc::clone(&backend), config).unwrap();
    let ids: Vec<ExtentId> = (0..300).map(ExtentId).collect();
    for &id in &ids {
        store.write(id, &value(id, 1, 64)).unwrap();
    }
    backend.slow_reads.store(true, Ordering::SeqCst);
    assert!(store.prefetch(&ids) > 250);
    let before = backend.reads.load(Ordering::SeqCst);
    store.close().unwrap();
    let after = backend.reads.load(Ordering::SeqCst);
    assert!(
        after - before <= 1,
        "{} loads after close began",
        after - before
    );
    assert!(
        before < 300,
        "most hints were still queued: {before} loaded"
    );
}

#[test]
fn writes_of_one_extent_serialize_and_try_write_fails_fast() {
    let backend = Gate::new(1);
    let store = Arc::new(Store::new(Arc::clone(&backend), StoreConfig::default()).unwrap());
    let id = ExtentId(9);
    backend.close();
    let first = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.write(id, &value(id, 1, 100)))
    };
    // Bounded: the first write reaches its sync and blocks there.
    while backend.syncs_waiting.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    assert_eq!(
        store.try_write(id, &value(id, 2, 100)).unwrap_err().code(),
        "FPRE015",
        "try_write does not wait"
    );
    let second = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.write(id, &value(id, 2, 100)))
    };
    backend.open();
    assert_eq!(first.join().unwrap().unwrap().generation(), 1);
    assert_eq!(
        second.join().unwrap().unwrap().generation(),
        2,
        "waited its turn"
    );
    assert_eq!(decode(&store.read(id).unwrap()), (id, 2));
}

#[test]
fn a_write_that_waits_too_long_fails_with_a_typed_error() {
    let backend = Gate::new(1);
    let config = StoreConfig::builder().write_wait_ms(0).build().unwrap();
    let store = Arc::new(Store::new(Arc::clone(&backend), config).unwrap());
    let id = ExtentId(4);
    backend.close();
    let first = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.write(id, &value(id, 1, 100)))
    };
    while backend.syncs_waiting.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let err = store.write(id, &value(id, 2, 100)).unwrap_err();
    assert!(matches!(err, Error::WriteInProgress { extent } if extent == id));
    backend.open();
    first.join().unwrap().unwrap();
}

#[test]
fn the_listener_sees_every_committed_change_once_in_order() {
    let store = Store::new(MemBackend::new(2), StoreConfig::default()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    store.set_listener(move |e: &Event| sink.lock().expect("lock").push(e.clone()));
    let (a, b) = (ExtentId(1), ExtentId(2));
    let w1 = store.write(a, &value(a, 1, 64)).unwrap();
    let w2 = store.write(a, &value(a, 2, 64)).unwrap();
    let batch = store
        .write_batch(&[(b, value(b, 1, 64).as_slice())])
        .unwrap();
    let before = store.snapshot(a).unwrap().location();
    let moved = match store.compact(a).unwrap() {
        extentmeta::CompactOutcome::Committed(s) => s,
        other => panic!("{other:?}"),
    };
    let deleted = store.delete(b).unwrap();
    let _ = store.read(a).unwrap(); // reads emit nothing
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![
            Event::Written { record: w1 },
            Event::Written { record: w2 },
            Event::Written { record: batch[0] },
            Event::Relocated {
                record: moved,
                from: before,
                cause: Relocation::Compaction
            },
            Event::Deleted { record: deleted },
        ]
    );
    store.clear_listener();
    store.write(a, &value(a, 3, 64)).unwrap();
    assert_eq!(store.stats().listener_panics, 0);
}

#[test]
fn a_panicking_listener_is_contained_and_counted() {
    let store = Store::new(MemBackend::new(1), StoreConfig::default()).unwrap();
    store.set_listener(|_: &Event| panic!("listener bug"));
    let id = ExtentId(5);
    assert_eq!(store.write(id, &value(id, 1, 64)).unwrap().generation(), 1);
    assert_eq!(store.write(id, &value(id, 2, 64)).unwrap().generation(), 2);
    assert_eq!(store.stats().listener_panics, 2);
    assert_eq!(decode(&store.read(id).unwrap()), (id, 2));
}

/// Quarantine and remap events come from the integrity ladder: a good copy is
/// served by a backend that keeps every value it was given.
#[test]
fn quarantine_and_remap_are_events() {
    struct Flipping {
        inner: MemBackend,
        flip: AtomicBool,
        good: Mutex<std::collections::HashMap<(u64, u64), Vec<u8>>>,
    }
    impl Backend for Flipping {
        fn device_count(&self) -> u16 {
            self.inner.device_count()
        }
        fn read_at(&self, l: Location, buf: &mut [u8]) -> Result<()> {
            self.inner.read_at(l, buf)?;
            if self.flip.load(Ordering::SeqCst) {
                buf[0] ^= 0xFF;
            }
            Ok(())
        }
        fn write_at(&self, l: Location, bytes: &[u8]) -> Result<()> {
            self.inner.write_at(l, bytes)
        }
        fn sync(&self, device: u16) -> Result<()> {
            self.inner.sync(device)
        }
        fn good_copy(&self, extent: ExtentId, generation: u64) -> Option<extentmeta::Bytes> {
            let good = self
                .good
                .lock()
                .unwrap()
                .get(&(extent.0, generation))
                .cloned()?;
            self.flip.store(false, Ordering::SeqCst); // the replacement media is healthy
            Some(extentmeta::Bytes::from(good.as_slice()))
        }
    }
    let backend = Arc::new(Flipping {
        inner: MemBackend::new(2),
        flip: AtomicBool::new(false),
        good: Mutex::new(Default::default()),
    });
    let store = Store::new(Arc::clone(&backend), StoreConfig::default()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    store.set_listener(move |e: &Event| sink.lock().expect("lock").push(e.clone()));
    let id = ExtentId(7);
    let bytes = value(id, 1, 128);
    store.write(id, &bytes).unwrap();
    backend.good.lock().expect("lock").insert((id.0, 1), bytes);
    let at = store.snapshot(id).unwrap().location();
    backend.flip.store(true, Ordering::SeqCst);
    assert!(matches!(
        store.verify(id).unwrap(),
        Verdict::Repaired { .. }
    ));
    let seen = seen.lock().expect("lock").clone();
    assert!(matches!(&seen[1], Event::Quarantined { record } if record.extent() == id));
    assert!(matches!(
        &seen[2],
        Event::Relocated { record, from, cause: Relocation::Remap } if record.extent() == id && *from == at
    ));
    assert_eq!(seen.len(), 3, "{seen:?}");
}

/// Every write, compaction and verification is timed; reads are sampled one in
/// sixteen per thread, into the hit or the miss histogram.
#[test]
fn histograms_count_exactly_what_they_time() {
    let store = Arc::new(Store::new(MemBackend::new(1), StoreConfig::default()).unwrap());
    let id = ExtentId(11);
    for g in 1..=5 {
        store.write(id, &value(id, g, 64)).unwrap();
    }
    store.compact(id).unwrap();
    store.verify(id).unwrap();
    let reader = {
        let store = Arc::clone(&store);
        // A fresh thread: its sampling counter starts at zero.
        std::thread::spawn(move || {
            for _ in 0..64 {
                decode(&store.read(id).unwrap());
            }
        })
    };
    reader.join().unwrap();
    let l = store.stats().latency;
    assert_eq!(l.write.count, 5);
    assert_eq!(l.compaction.count, 1);
    assert_eq!(l.verify.count, 1);
    assert_eq!(l.read_hit.count + l.read_miss.count, 64 / 16);
    assert!(
        l.read_hit.count >= 3,
        "at most the first read missed: {l:?}"
    );
    assert!(l.write.p50_ns > 0 && l.write.max_ns >= l.write.p99_ns);
}
