//! Compaction, verification and the integrity ladder through the `Store`.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::fault_backend::{FaultBackend, Inject, Op};
use common::{decode, one_worker, value, wait_until};
use extentmeta::{
    CompactOutcome, Error, ExtentId, IntegrityPolicy, Location, State, Store, StoreConfig, Verdict,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

fn policy() -> IntegrityPolicy {
    // Short backoff: the tests check counts, not time.
    IntegrityPolicy::builder()
        .backoff_base_us(1)
        .backoff_max_us(10)
        .build()
        .unwrap()
}

fn store(fabric: &Arc<FaultBackend>, cache_bytes: u64) -> Store {
    let config = StoreConfig::builder()
        .cache_bytes(cache_bytes)
        .prefetch_workers(0)
        .policy(policy())
        .build()
        .unwrap();
    Store::new(fabric.clone(), config).unwrap()
}

fn flip_bits(fabric: &FaultBackend, location: Location) {
    fabric
        .inner()
        .corrupt(location, |b| b[40] ^= 0b0001_0100)
        .unwrap();
}

#[test]
fn fpre004_means_a_real_fault_bit_flip_at_rest_is_quarantined_and_remapped_from_a_replica() {
    let fabric = FaultBackend::new(2);
    let store = store(&fabric, 0);
    let id = ExtentId(5);
    let before = store.write(id, &value(id, 1, 4096)).unwrap();
    fabric.add_replica(id, 1, value(id, 1, 4096));
    flip_bits(&fabric, before.location());

    let reads_before = fabric.calls(Op::Read);
    // The read climbs the ladder and still answers with the right bytes.
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    let stats = store.stats();
    assert_eq!(stats.fpre004, 1);
    assert_eq!(stats.retries, 3, "exactly the retry limit of re-reads");
    assert_eq!((stats.quarantines, stats.remaps), (1, 1));
    // 1 failed read + (1 + 3) verification reads + 1 read-back of the remapped copy
    // + 1 final read.
    assert_eq!(fabric.calls(Op::Read) - reads_before, 7);

    let after = store.snapshot(id).unwrap();
    assert_eq!(after.state(), State::Durable);
    assert_eq!(
        after.generation(),
        1,
        "remap moves bytes, never changes them"
    );
    assert_ne!(after.location(), before.location());
    assert_eq!(store.verify(id).unwrap(), Verdict::Ok { transient: 0 });
    // The bad location is never handed out again.
    for i in 100..140 {
        let s = store
            .write(ExtentId(i), &value(ExtentId(i), 1, 4096))
            .unwrap();
        assert_ne!(s.location(), before.location(), "bad location reused");
    }
}

#[test]
fn fpre004_means_a_real_fault_transient_errors_within_the_limit_raise_nothing() {
    let fabric = FaultBackend::new(1);
    let store = store(&fabric, 0);
    let id = ExtentId(2);
    let s = store.write(id, &value(id, 1, 1000)).unwrap();
    fabric.fail_reads_at(s.location(), 3);
    assert_eq!(store.verify(id).unwrap(), Verdict::Ok { transient: 3 });
    let stats = store.stats();
    assert_eq!(
        (stats.fpre004, stats.quarantines, stats.verify_transient),
        (0, 0, 1)
    );
    assert_eq!(
        stats.device_errors, 1,
        "one episode, one device error: retries not double-counted"
    );
    fabric.fail_reads_at(s.location(), 2);
    assert_eq!(
        decode(&store.read(id).unwrap()),
        (id, 1),
        "the read path recovers too"
    );
    assert_eq!(store.stats().fpre004, 0);
}

/// A read refused for another reason than the media (the store's device
/// files closed under a verify: FPRE017) ends the verification with that
/// error: no retries counted, no FPRE004, no quarantine.
#[test]
fn a_read_refused_by_a_shutdown_is_not_a_media_fault() {
    use common::fault_backend::Inject;
    let fabric = FaultBackend::new(1);
    let store = store(&fabric, 0);
    let id = ExtentId(5);
    store.write(id, &value(id, 1, 1000)).unwrap();
    fabric.script(vec![Inject::Shutdown]);
    let err = store.verify(id).unwrap_err();
    assert_eq!(err.code(), "FPRE017", "{err}");
    fabric.script(Vec::new());
    let stats = store.stats();
    assert_eq!((stats.fpre004, stats.quarantines), (0, 0));
    assert_eq!(store.snapshot(id).unwrap().state(), State::Durable);
    assert_eq!(
        decode(&store.read(id).unwrap()),
        (id, 1),
        "extent 5, generation 1"
    );
}

/// A backend that refuses reads for a while (an I/O error that says nothing
/// of the bytes, `PermissionDenied` here) gets the error back on a read and a
/// verify: retryable, no retries counted, no FPRE004, no quarantine, no bad
/// location, no device error. Once it reads again the extent is there.
#[test]
fn a_read_the_backend_refuses_is_not_a_media_fault() {
    // A backend that panics on every read says nothing of the medium either:
    // the code failed, not the disk.
    for inject in [Inject::Refused, Inject::Panic] {
        let fabric = FaultBackend::new(1);
        let store = store(&fabric, 0);
        let id = ExtentId(6);
        store.write(id, &value(id, 1, 1000)).unwrap();
        fabric.script(vec![inject]);
        let err = store.read(id).unwrap_err();
        assert_eq!(err.code(), "FPRE009", "{inject:?}: {err}");
        assert!(err.is_retryable() && !err.is_media_fault(), "{err}");
        let err = store.verify(id).unwrap_err();
        assert_eq!(err.code(), "FPRE009", "{inject:?}: {err}");
        fabric.script(Vec::new());
        let stats = store.stats();
        assert_eq!(
            (stats.fpre004, stats.quarantines, stats.device_errors),
            (0, 0, 0),
            "{inject:?}: {stats:?}"
        );
        assert_eq!(store.space()[0].bad_bytes, 0, "{inject:?}");
        assert_eq!(store.snapshot(id).unwrap().state(), State::Durable);
        assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    }
}

/// A drain whose copy fails on its target leaves that extent on the device:
/// it says so (FPRE037, with the counts) instead of `Ok`, the extent stays
/// readable, and a second drain finishes.
#[test]
fn a_drain_that_leaves_an_extent_behind_says_so() {
    // A copy whose write fails on its target, or whose backend panics: the
    // drain goes on past that extent and counts the moves it made.
    for inject in [Inject::Fail, Inject::Panic] {
        drain_leaving_one_behind(inject);
    }
}

fn drain_leaving_one_behind(inject: Inject) {
    let fabric = FaultBackend::new(2);
    let store = store(&fabric, 0);
    let on_dev0: Vec<u64> = (0..20u64)
        .filter(|&i| {
            let s = store
                .write(ExtentId(i), &value(ExtentId(i), 1, 700))
                .unwrap();
            s.location().device == 0
        })
        .collect();
    assert!(on_dev0.len() >= 2, "{on_dev0:?}");
    // The first copy's write, on device 1, fails.
    fabric.inject_nth(Op::Write, 1, inject);
    let err = store.drain(0).unwrap_err();
    // A verdict, not a race: what stays may stay for good (a quarantined
    // extent with no good copy), so a retry loop must not spin on it.
    assert!(!err.is_retryable(), "{err}");
    match err {
        Error::DrainIncomplete {
            device,
            moved,
            left,
        } => {
            assert_eq!((device, left), (0, 1));
            assert_eq!(moved, on_dev0.len() as u64 - 1);
        }
        other => panic!("{other}"),
    }
    for &i in &on_dev0 {
        assert_eq!(decode(&store.read(ExtentId(i)).unwrap()), (ExtentId(i), 1));
    }
    assert_eq!(
        store.drain(0).unwrap(),
        1,
        "the second drain moves the rest"
    );
    for &i in &on_dev0 {
        assert_eq!(store.snapshot(ExtentId(i)).unwrap().location().device, 1);
    }
}

#[test]
fn last_good_copy_kept_without_replica_the_record_stays_quarantined() {
    let fabric = FaultBackend::new(1);
    let store = store(&fabric, 0);
    let id = ExtentId(3);
    let s = store.write(id, &value(id, 1, 512)).unwrap();
    flip_bits(&fabric, s.location());
    assert_eq!(store.verify(id).unwrap_err().code(), "FPRE004");
    assert_eq!(
        store.read(id).unwrap_err(),
        Error::Quarantined { extent: id }
    );
    let kept = store.snapshot(id).unwrap();
    assert_eq!(kept.state(), State::Quarantined);
    assert_eq!(
        (kept.location(), kept.generation()),
        (s.location(), 1),
        "nothing dropped"
    );
    assert_eq!(store.stats().remap_failed, 1);
    // A new write repairs it the ordinary way.
    store.write(id, &value(id, 2, 512)).unwrap();
    assert_eq!(decode(&store.read(id).unwrap()), (id, 2));
}

#[test]
fn last_good_copy_kept_a_verified_cache_entry_remaps_or_serves_a_quarantined_extent() {
    // Cache on, no replica: the cached copy (checksum verified) is the good copy.
    let fabric = FaultBackend::new(1);
    let store = store(&fabric, 1 << 20);
    let id = ExtentId(4);
    let s = store.write(id, &value(id, 1, 512)).unwrap();
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1)); // cached now
    flip_bits(&fabric, s.location());
    // The fault was found (FPRE004 counted) and repaired: the verdict says so.
    let verdict = store.verify(id).unwrap();
    assert!(
        matches!(verdict, Verdict::Repaired { faulted, .. } if faulted == s.location()),
        "{verdict:?}"
    );
    assert_eq!(store.stats().fpre004, 1);
    assert_eq!(
        store.stats().remaps,
        1,
        "remapped from the verified cache entry"
    );
    assert_eq!(store.snapshot(id).unwrap().state(), State::Durable);

    // Now with no space for a remap: the extent stays quarantined, and reads are
    // served from the verified cache entry.
    let fabric = FaultBackend::new(1);
    let config = StoreConfig::builder()
        .cache_bytes(1 << 20)
        .prefetch_workers(0)
        .policy(policy())
        .device_capacity_bytes(4096)
        .build()
        .unwrap();
    let store = Store::new(fabric.clone(), config).unwrap();
    let s = store.write(id, &value(id, 1, 512)).unwrap();
    store.read(id).unwrap();
    flip_bits(&fabric, s.location());
    assert_eq!(store.verify(id).unwrap_err().code(), "FPRE004");
    assert_eq!(store.snapshot(id).unwrap().state(), State::Quarantined);
    assert_eq!(
        decode(&store.read(id).unwrap()),
        (id, 1),
        "served from the verified cache"
    );
}

#[test]
fn fpre004_means_a_real_fault_misdirected_write_is_caught_by_the_identity_bound_checksum() {
    let fabric = FaultBackend::new(1);
    let store = store(&fabric, 0);
    let (a, b) = (ExtentId(1), ExtentId(2));
    let sa = store.write(a, &value(a, 1, 256)).unwrap();
    store.write(b, &value(b, 1, 256)).unwrap();
    // b's intact bytes land at a's location: right length, wrong identity.
    fabric
        .inner()
        .corrupt(sa.location(), |buf| buf.copy_from_slice(&value(b, 1, 256)))
        .unwrap();
    fabric.add_replica(a, 1, value(a, 1, 256));
    assert_eq!(
        decode(&store.read(a).unwrap()),
        (a, 1),
        "caught and remapped"
    );
    assert_eq!(store.stats().fpre004, 1);
}

#[test]
fn compaction_loses_nothing_moves_bytes_and_keeps_the_generation() {
    let fabric = FaultBackend::new(2);
    let store = store(&fabric, 1 << 20);
    let id = ExtentId(9);
    let s = store.write(id, &value(id, 1, 3000)).unwrap();
    store.read(id).unwrap();
    let CompactOutcome::Committed(c) = store.compact(id).unwrap() else {
        panic!("uncontended compaction commits");
    };
    assert_ne!(c.location(), s.location());
    assert_ne!(
        c.location().device,
        s.location().device,
        "prefers another device"
    );
    assert_eq!(
        (c.generation(), c.checksum(), c.state()),
        (1, s.checksum(), State::Durable)
    );
    let hits = store.stats().cache.hits;
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    assert_eq!(
        store.stats().cache.hits,
        hits + 1,
        "the cache entry stayed valid"
    );
    assert_eq!(store.verify(id).unwrap(), Verdict::Ok { transient: 0 });
    assert_eq!(
        store.compact(ExtentId(77)).unwrap_err().code(),
        "FPRE002",
        "vacant: illegal"
    );
}

#[test]
fn compaction_loses_nothing_a_write_committing_during_compaction_wins() {
    let fabric = FaultBackend::new(2);
    let store = store(&fabric, 0);
    let id = ExtentId(1);
    let s = store.write(id, &value(id, 1, 2048)).unwrap();
    let gate = fabric.gate_read_at(s.location());
    std::thread::scope(|scope| {
        let compaction = scope.spawn(|| store.compact(id));
        gate.wait_entered(); // the compaction is reading the source
        let w = store.write(id, &value(id, 2, 2048)).unwrap();
        assert_eq!(w.generation(), 2);
        gate.release();
        assert_eq!(compaction.join().unwrap().unwrap(), CompactOutcome::Aborted);
    });
    let now = store.snapshot(id).unwrap();
    assert_eq!((now.state(), now.generation()), (State::Durable, 2));
    assert_eq!(
        decode(&store.read(id).unwrap()),
        (id, 2),
        "the write won, nothing lost"
    );
    let stats = store.stats();
    assert_eq!(
        (stats.compactions_committed, stats.compactions_aborted),
        (0, 1)
    );
}

#[test]
fn fpre004_means_a_real_fault_never_raised_on_a_healthy_store_under_concurrency() {
    const EXTENTS: u64 = 12;
    let fabric = FaultBackend::new(3);
    let store = store(&fabric, 64 << 10);
    for i in 0..EXTENTS {
        store
            .write(ExtentId(i), &value(ExtentId(i), 1, 1500))
            .unwrap();
    }
    let generations: Vec<AtomicU32> = (0..EXTENTS).map(|_| AtomicU32::new(1)).collect();
    // Rounds until the threads raced at least once (a compaction aborted by a
    // write, or a verification that met a change): the test is about races.
    for _ in 0..20 {
        let s = store.stats();
        if s.compactions_aborted + s.verify_raced > 0 {
            break;
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                for round in 0..400u64 {
                    let i = round % EXTENTS;
                    let g = u64::from(generations[i as usize].load(Ordering::SeqCst)) + 1;
                    store
                        .write(ExtentId(i), &value(ExtentId(i), g, 1500))
                        .unwrap();
                    generations[i as usize].store(g as u32, Ordering::SeqCst);
                }
            });
            s.spawn(|| {
                for round in 0..600u64 {
                    // A race (a write in flight, another compaction) is an abort, never
                    // an error.
                    let outcome = store.compact(ExtentId((round * 5) % EXTENTS));
                    assert!(
                        outcome.is_ok(),
                        "compaction reported a race as a fault: {outcome:?}"
                    );
                }
            });
            s.spawn(|| {
                for round in 0..600u64 {
                    let id = ExtentId((round * 7) % EXTENTS);
                    match store.verify(id) {
                        Ok(_) => {}
                        Err(e) => panic!("verification of a healthy store failed: {e}"),
                    }
                    let (got, _) = decode(&store.read(id).unwrap());
                    assert_eq!(got, id);
                }
            });
        });
    }
    let stats = store.stats();
    assert_eq!((stats.fpre004, stats.quarantines), (0, 0), "{stats:?}");
    assert!(stats.compactions_committed > 0);
    assert!(
        stats.compactions_aborted + stats.verify_raced > 0,
        "the threads never raced: {stats:?}"
    );
}

#[test]
fn device_health_ten_errors_degrade_a_device_which_drain_empties() {
    let fabric = FaultBackend::new(2);
    let store = store(&fabric, 0);
    let written: Vec<_> = (0..40u64)
        .map(|i| {
            store
                .write(ExtentId(i), &value(ExtentId(i), 1, 700))
                .unwrap()
        })
        .collect();
    let on_dev0: Vec<_> = written
        .iter()
        .filter(|s| s.location().device == 0)
        .take(10)
        .collect();
    assert_eq!(on_dev0.len(), 10);
    for s in &on_dev0 {
        fabric.fail_reads_at(s.location(), 1);
        assert_eq!(
            store.verify(s.extent()).unwrap(),
            Verdict::Ok { transient: 1 }
        );
    }
    assert_eq!(store.stats().devices_degraded, vec![0]);
    let fresh = store
        .write(ExtentId(500), &value(ExtentId(500), 1, 700))
        .unwrap();
    assert_eq!(
        fresh.location().device,
        1,
        "new allocations avoid the degraded device"
    );
    let moved = store.drain(0).unwrap();
    assert!(moved >= 10);
    for i in 0..40u64 {
        let s = store.snapshot(ExtentId(i)).unwrap();
        assert_eq!(s.location().device, 1, "{} still on device 0", ExtentId(i));
        assert_eq!(decode(&store.read(ExtentId(i)).unwrap()), (ExtentId(i), 1));
    }
}

#[test]
fn scrubber_finds_and_repairs_a_bit_flip_and_reports_progress() {
    let fabric = FaultBackend::new(1);
    let config = StoreConfig::builder()
        .cache_bytes(0)
        .prefetch_workers(0)
        .policy(policy())
        .scrub_bytes_per_sec(1 << 30)
        .build()
        .unwrap();
    let store = Store::new(fabric.clone(), config).unwrap();
    let bad = ExtentId(6);
    for i in 0..20u64 {
        store
            .write(ExtentId(i), &value(ExtentId(i), 1, 1024))
            .unwrap();
    }
    fabric.add_replica(bad, 1, value(bad, 1, 1024));
    flip_bits(&fabric, store.snapshot(bad).unwrap().location());
    // Until two full passes are done (a condition, not a timer).
    while store.stats().scrub_passes < 2 {
        std::thread::yield_now();
    }
    let stats = store.stats();
    assert_eq!((stats.fpre004, stats.remaps), (1, 1), "{stats:?}");
    assert!(stats.scrub_extents >= 20 && stats.scrub_bytes >= 20 * 1024);
    assert_eq!(decode(&store.read(bad).unwrap()), (bad, 1));
}

/// A table whose ids are mostly empty (one extent in a segment of 16 384
/// ids) is walked at the scrub rate, each empty id paid as its 32-byte record,
/// not at full speed pass after pass. The bound holds whatever the timing:
/// the scrubber can only sleep longer than it asks.
#[test]
fn the_scrubber_paces_its_walk_over_empty_ids() {
    const RATE: f64 = 1_000_000.0;
    let started = std::time::Instant::now();
    let config = StoreConfig::builder()
        .cache_bytes(0)
        .prefetch_workers(0)
        .scrub_bytes_per_sec(RATE as u64)
        .build()
        .unwrap();
    let store = Store::new(extentmeta::MemBackend::new(1), config).unwrap();
    let id = ExtentId(0);
    store.write(id, &value(id, 1, 64)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let passes = store.stats().scrub_passes;
    let elapsed = started.elapsed().as_secs_f64();
    // Each pass pays 16 383 empty ids at the lowest jitter, less the last
    // millisecond it may still owe, then idles 100 ms.
    let pass = 16_383.0 * 32.0 / RATE * 0.5 - 0.001;
    let most = ((elapsed + 0.1) / (pass + 0.1)).floor();
    assert!(
        passes as f64 <= most,
        "{passes} passes in {elapsed:.3} s: at most {most}"
    );
}

/// Writes `id` at generation 1 with a replica, then corrupts its media copy so
/// that verification finds a persistent fault.
fn faulty_extent(backend: &FaultBackend, store: &Store, id: ExtentId) {
    let bytes = value(id, 1, 256);
    let snapshot = store.write(id, &bytes).unwrap();
    backend.add_replica(id, 1, bytes);
    backend
        .inner()
        .corrupt(snapshot.location(), |b| b[40] ^= 0xff)
        .unwrap();
}

/// A quarantine whose remap lost the race to a write is counted (it once was
/// not: quarantines 0 with fpre004 1).
#[test]
fn a_quarantine_is_counted_when_a_write_wins_its_remap() {
    let backend = FaultBackend::new(2);
    let store = Arc::new(Store::new(Arc::clone(&backend), one_worker(16)).unwrap());
    let id = ExtentId(5);
    faulty_extent(&backend, &store, id);
    let good_copy = backend.gate_next(Op::GoodCopy);
    let verifier = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.verify(id))
    };
    good_copy.wait_entered();
    assert_eq!(store.snapshot(id).unwrap().state(), State::Quarantined);
    store.write(id, &value(id, 2, 256)).unwrap();
    good_copy.release();
    let _ = verifier.join().unwrap();
    let stats = store.stats();
    assert_eq!(stats.fpre004, 1);
    assert_eq!(stats.quarantines, 1, "the quarantine is counted: {stats:?}");
    assert_eq!(stats.remaps, 0, "the write won: nothing was remapped");
    assert_eq!(decode(&store.read(id).unwrap()), (id, 2));
}

/// A store whose extent `id` (generation 1) is corrupt with no good copy
/// anywhere (no replica, nothing cached), and a `verify` of it on its own
/// thread, held where its repair asks for a good copy: the gate to release it.
fn searching_for_a_good_copy(
    id: ExtentId,
) -> (
    Arc<FaultBackend>,
    Arc<Store>,
    common::fault_backend::Gate,
    std::thread::JoinHandle<extentmeta::Result<Verdict>>,
) {
    let backend = FaultBackend::new(2);
    let store = Arc::new(store(&backend, 0));
    let snapshot = store.write(id, &value(id, 1, 256)).unwrap();
    flip_bits(&backend, snapshot.location());
    let good_copy = backend.gate_next(Op::GoodCopy);
    let verifier = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.verify(id))
    };
    good_copy.wait_entered();
    (backend, store, good_copy, verifier)
}

/// A repair that finds no good copy because a write or a delete replaced the
/// quarantined record while it looked for one answers `Raced`: the faulted
/// bytes are no longer the record's, and FPRE004 means a real fault only.
#[test]
fn a_repair_whose_record_a_write_or_delete_replaced_is_a_race_not_a_fault() {
    for delete in [false, true] {
        let id = ExtentId(9);
        let (_, store, good_copy, verifier) = searching_for_a_good_copy(id);
        assert_eq!(store.snapshot(id).unwrap().state(), State::Quarantined);
        match delete {
            false => drop(store.write(id, &value(id, 2, 256)).unwrap()),
            true => drop(store.delete(id).unwrap()),
        }
        good_copy.release();
        let verdict = verifier.join().unwrap();
        assert!(
            matches!(verdict, Ok(Verdict::Raced)),
            "delete {delete}: {verdict:?}"
        );
        let stats = store.stats();
        assert_eq!((stats.quarantines, stats.remap_failed), (1, 0), "{stats:?}");
        match delete {
            false => assert_eq!(decode(&store.read(id).unwrap()), (id, 2)),
            true => assert_eq!(store.read(id).unwrap_err().code(), "FPRE012"),
        }
    }
}

/// Only a committed change makes a repair's search a race: a write of the
/// quarantined extent still pending when no good copy is found may yet fail
/// and leave the fault in place, so the fault is reported (FPRE004).
#[test]
fn a_write_still_pending_does_not_make_a_real_fault_a_race() {
    let id = ExtentId(11);
    let (backend, store, good_copy, verifier) = searching_for_a_good_copy(id);
    let data_write = backend.gate_next(Op::Write);
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.write(id, &value(id, 2, 256)))
    };
    data_write.wait_entered();
    assert!(store.snapshot(id).unwrap().write_pending());
    good_copy.release();
    let err = verifier.join().unwrap().unwrap_err();
    assert_eq!(err.code(), "FPRE004", "{err}");
    data_write.release();
    let _ = writer.join().unwrap();
}

/// A verified copy that a repair could not install (its copy's write
/// failed) is kept, not left to the cache's next eviction: it is the
/// extent's last good copy. Reads of the quarantined extent go on, and a
/// later `verify` remaps from it after the cached entry is long gone.
#[test]
fn a_cached_good_copy_whose_remap_failed_outlives_its_eviction() {
    let backend = FaultBackend::new(2);
    let store = store(&backend, 64 << 10);
    let id = ExtentId(12);
    let snapshot = store.write(id, &value(id, 1, 4000)).unwrap();
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1), "now cached");
    flip_bits(&backend, snapshot.location());
    // No replica; the repair's copy (from the cache) fails to write, at
    // every location the repair tries.
    for nth in 1..=3 {
        backend.inject_nth(Op::Write, nth, Inject::Fail);
    }
    let err = store.verify(id).unwrap_err();
    assert_eq!(err.code(), "FPRE004", "{err}");
    assert_eq!(store.snapshot(id).unwrap().state(), State::Quarantined);
    // Other extents push the cached copy out.
    for i in 100..164 {
        let other = ExtentId(i);
        store.write(other, &value(other, 1, 4000)).unwrap();
        assert_eq!(decode(&store.read(other).unwrap()), (other, 1));
    }
    assert!(
        store.stats().cache.evicted > 16,
        "{:?}",
        store.stats().cache
    );
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1), "still served");
    assert!(matches!(store.verify(id), Ok(Verdict::Repaired { .. })));
    assert_eq!(store.snapshot(id).unwrap().state(), State::Durable);
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
}

/// A write of a quarantined extent that has only begun (its pending mark
/// bumps the record's version) does not make a repair's verified copy a
/// race: the remap goes on top of it (no second copy is fetched and
/// written), and the write then commits on top of the remap.
#[test]
fn a_write_merely_begun_does_not_throw_a_repair_s_copy_away() {
    let backend = FaultBackend::new(2);
    let store = Arc::new(store(&backend, 64 << 10));
    let id = ExtentId(13);
    let snapshot = store.write(id, &value(id, 1, 4000)).unwrap();
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1), "now cached");
    flip_bits(&backend, snapshot.location());
    // The repair's copy (from the cache) is written; its sync is held.
    let copy_sync = backend.gate_next(Op::Sync);
    let writes_before = backend.calls(Op::Write);
    let verifier = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.verify(id))
    };
    copy_sync.wait_entered();
    let data_write = backend.gate_next(Op::Write);
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.write(id, &value(id, 2, 4000)))
    };
    data_write.wait_entered();
    assert!(store.snapshot(id).unwrap().write_pending());
    copy_sync.release();
    let verdict = verifier.join().unwrap();
    assert!(
        matches!(verdict, Ok(Verdict::Repaired { .. })),
        "{verdict:?}"
    );
    data_write.release();
    assert_eq!(writer.join().unwrap().unwrap().generation(), 2);
    assert_eq!(decode(&store.read(id).unwrap()), (id, 2));
    // One copy written (not a second after the first was thrown away), and
    // the write's data.
    assert_eq!(backend.calls(Op::Write) - writes_before, 2);
}

/// A compaction whose source fails its checksum hands the extent to the
/// integrity ladder, as a read does: the persistent fault is quarantined and
/// remapped from the good copy, so the engine's retry of the compaction does
/// not meet the same fault forever.
#[test]
fn a_compaction_of_a_corrupt_source_climbs_the_ladder() {
    let backend = FaultBackend::new(2);
    let store = Store::new(Arc::clone(&backend), one_worker(16)).unwrap();
    let id = ExtentId(10);
    faulty_extent(&backend, &store, id);
    let err = store.compact(id).unwrap_err();
    assert!(err.is_media_fault(), "{err}");
    let stats = store.stats();
    assert_eq!((stats.quarantines, stats.remaps), (1, 1), "{stats:?}");
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    assert!(matches!(
        store.compact(id),
        Ok(CompactOutcome::Committed(_))
    ));
}

/// When a second verify finishes the remap first, the first verify's quarantine
/// is counted once (it once was not: quarantines 0, remaps 1).
#[test]
fn a_quarantine_is_counted_once_when_another_verify_remaps_first() {
    let backend = FaultBackend::new(2);
    let store = Arc::new(Store::new(Arc::clone(&backend), one_worker(16)).unwrap());
    let id = ExtentId(6);
    faulty_extent(&backend, &store, id);
    let good_copy = backend.gate_next(Op::GoodCopy);
    let first = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.verify(id))
    };
    good_copy.wait_entered();
    // The second verify finds the record quarantined and remaps it.
    let _ = store.verify(id);
    assert_eq!(store.snapshot(id).unwrap().state(), State::Durable);
    good_copy.release();
    let _ = first.join().unwrap();
    let stats = store.stats();
    assert_eq!(
        stats.quarantines, 1,
        "one quarantine, counted once: {stats:?}"
    );
    assert_eq!(stats.remaps, 1);
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
}

/// A `verify` that remapped the extent answers `Ok(Verdict::Repaired)` with the
/// faulted location and the remapped record (it once returned `Err(FPRE004)`);
/// FPRE004 stays an error only when the extent could not be repaired.
#[test]
fn verify_that_remapped_the_extent_says_repaired() {
    let backend = FaultBackend::new(2);
    let store = Store::new(Arc::clone(&backend), one_worker(16)).unwrap();
    let id = ExtentId(7);
    faulty_extent(&backend, &store, id);
    let before = store.snapshot(id).unwrap();
    let verdict = store.verify(id).unwrap();
    let Verdict::Repaired { faulted, remapped } = verdict else {
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
    backend
        .inner()
        .corrupt(s.location(), |b| b[40] ^= 0xff)
        .unwrap();
    // No replica, and the cache holds no copy of a never-read extent.
    let err = store.verify(id).unwrap_err();
    assert_eq!(err.code(), "FPRE004");
    assert_eq!(store.snapshot(id).unwrap().state(), State::Quarantined);
}

/// `compact` during a pending write is `Ok(Aborted)` (the record is busy: a race
/// the caller retries, not an illegal request; the docs once promised FPRE002);
/// FPRE002 stays for an extent that cannot be compacted at all (vacant).
#[test]
fn compact_during_a_pending_write_is_aborted_and_a_vacant_extent_is_fpre002() {
    let backend = FaultBackend::new(2);
    let store = Arc::new(Store::new(Arc::clone(&backend), one_worker(16)).unwrap());
    let id = ExtentId(9);
    store.write(id, &value(id, 1, 256)).unwrap();
    // Hold a write pending: its sync is held in the backend until released.
    let sync = backend.gate_next(Op::Sync);
    let blocker = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            store.write(id, &value(id, 2, 256)).unwrap();
        })
    };
    wait_until(|| store.snapshot(id).unwrap().write_pending());
    assert_eq!(store.compact(id).unwrap(), CompactOutcome::Aborted);
    sync.release();
    blocker.join().unwrap();
    assert_eq!(decode(&store.read(id).unwrap()), (id, 2));
    let err = store.compact(ExtentId(10)).unwrap_err();
    assert_eq!(err.code(), "FPRE002", "{err}");
}

/// A listener runs on the thread that made the change: the scrubber's, when
/// its repair quarantines an extent. A listener that closes the store there
/// must close it, though `close` cannot join the scrubber's own thread (a
/// thread joining itself panics, and the store was left half closed).
#[test]
fn a_listener_on_the_scrubber_thread_can_close_the_store() {
    let fabric = FaultBackend::new(1);
    let config = StoreConfig::builder()
        .cache_bytes(0)
        .prefetch_workers(0)
        .policy(policy())
        .scrub_bytes_per_sec(1 << 30)
        .build()
        .unwrap();
    let store = Arc::new(Store::new(fabric.clone(), config).unwrap());
    for i in 0..8u64 {
        let id = ExtentId(i);
        store.write(id, &value(id, 1, 1024)).unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let weak = Arc::downgrade(&store);
    store.add_listener(move |e: &extentmeta::events::Event| {
        if let extentmeta::events::Event::Quarantined { .. } = e
            && let Some(store) = weak.upgrade()
        {
            let _ = tx.lock().unwrap().send(store.close());
        }
    });
    // No replica: the scrubber's repair quarantines extent 6.
    flip_bits(&fabric, store.snapshot(ExtentId(6)).unwrap().location());
    // Only a hang fails on time: the deadline is far beyond any scrub pass.
    let closed = rx.recv_timeout(std::time::Duration::from_secs(60));
    closed.expect("the listener's close returned").unwrap();
    assert_eq!(store.stats().listener_panics, 0);
    assert_eq!(store.read(ExtentId(1)).unwrap_err().code(), "FPRE017");
}

/// `warm` (a prefetch) of a quarantined extent with no verified copy cached
/// answers `Quarantined` and fetches nothing from the engine's good-copy
/// source: a replica fetched for a prefetch would warm nothing. A demand
/// read still gets its bytes from there.
#[test]
fn warming_a_quarantined_extent_fetches_no_good_copy() {
    let fabric = FaultBackend::new(1);
    let store = store(&fabric, 0);
    let id = ExtentId(9);
    let bytes = value(id, 1, 2048);
    let at = store.write(id, &bytes).unwrap().location();
    flip_bits(&fabric, at);
    // No replica yet: the fault is found, and the record stays quarantined.
    let verdict = store.verify(id);
    let state = store.snapshot(id).unwrap().state();
    assert_eq!(state, State::Quarantined, "{verdict:?}");
    fabric.add_replica(id, 1, bytes);
    let fetched = fabric.calls(Op::GoodCopy);
    let err = store.warm(id).unwrap_err();
    assert!(
        matches!(err, Error::Quarantined { extent } if extent == id),
        "{err}"
    );
    assert_eq!(fabric.calls(Op::GoodCopy), fetched, "nothing fetched");
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    assert!(
        fabric.calls(Op::GoodCopy) > fetched,
        "the demand read fetched it"
    );
}

/// A compaction's copy whose read-back fails (EIO, not wrong bytes) leaves
/// its location out of use for good, as a copy that reads back wrong does:
/// the allocator's first fit would otherwise hand it to the next move, and
/// to writes acknowledged on media that already failed.
#[test]
fn a_copy_location_that_fails_its_read_back_is_not_handed_out_again() {
    let fabric = FaultBackend::new(1);
    let store = store(&fabric, 0);
    let id = ExtentId(3);
    let source = store.write(id, &value(id, 1, 4096)).unwrap().location();
    // The source's read, then the copy's read-back, which fails.
    fabric.inject_nth(Op::Read, 2, Inject::Fail);
    let first = store.compact(id);
    assert_eq!(store.space()[0].bad_bytes, 4096, "{first:?}");
    assert_eq!(store.snapshot(id).unwrap().location(), source, "not moved");
    let CompactOutcome::Committed(moved) = store.compact(id).unwrap() else {
        panic!("the second compaction moves it");
    };
    let failed_at = source.offset + 4096;
    assert_ne!(moved.location().offset, failed_at, "{moved:?}");
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
}

/// The same for a remap: its copy's location fails the read-back, and is
/// marked bad beside the faulted one; the copy then goes to another location,
/// and the remap completes there.
#[test]
fn a_remap_location_that_fails_its_read_back_is_not_handed_out_again() {
    let fabric = FaultBackend::new(1);
    let store = store(&fabric, 0);
    let id = ExtentId(4);
    let bytes = value(id, 1, 4096);
    let at = store.write(id, &bytes).unwrap().location();
    fabric.add_replica(id, 1, bytes);
    flip_bits(&fabric, at);
    // Verification reads the faulted location 1 + 3 times; the fifth read is
    // the remapped copy's read-back.
    fabric.inject_nth(Op::Read, 5, Inject::Fail);
    let verdict = store.verify(id).unwrap();
    assert_eq!(store.space()[0].bad_bytes, 2 * 4096, "{verdict:?}");
    let now = store.snapshot(id).unwrap();
    assert_eq!(now.state(), State::Durable, "{verdict:?}");
    assert_ne!(now.location(), at);
    fabric.disarm();
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
}

/// A device that fails every write of a repair's copy costs it at most three
/// locations, each marked bad; the record stays quarantined and is served
/// from the verified copy, and a later verification remaps it once writes
/// succeed again.
#[test]
fn a_repair_tries_three_locations_for_its_copy_then_stays_quarantined() {
    let fabric = FaultBackend::new(1);
    let store = store(&fabric, 0);
    let id = ExtentId(6);
    let bytes = value(id, 1, 4096);
    let at = store.write(id, &bytes).unwrap().location();
    fabric.add_replica(id, 1, bytes);
    flip_bits(&fabric, at);
    for nth in 1..=4 {
        fabric.inject_nth(Op::Write, nth, Inject::Fail);
    }
    let verdict = store.verify(id);
    assert_eq!(store.space()[0].bad_bytes, 4 * 4096, "{verdict:?}");
    assert_eq!(store.snapshot(id).unwrap().state(), State::Quarantined);
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    // The fourth armed write failure is still due: it fails the next repair's
    // first target, which the second one gets past.
    store.verify(id).unwrap();
    assert_eq!(store.space()[0].bad_bytes, 5 * 4096);
    let now = store.snapshot(id).unwrap();
    assert_eq!(now.state(), State::Durable);
    fabric.disarm();
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
}

/// A write whose data write fails with a media error leaves its location
/// marked bad, so the next write goes elsewhere: freed, first fit would hand
/// it out next, and a sector that keeps failing would fail every such write.
/// An error that says nothing of the media (a refused call) frees it.
#[test]
fn a_location_whose_write_failed_is_not_handed_to_the_next_write() {
    for (batch, inject, bad) in [
        (false, Inject::Fail, true),
        (true, Inject::Fail, true),
        (false, Inject::Refused, false),
        // A panic says nothing of the medium: the location is free again.
        (false, Inject::Panic, false),
        (true, Inject::Panic, false),
    ] {
        let what = format!("batch {batch}, {inject:?}");
        let fabric = FaultBackend::new(1);
        let store = store(&fabric, 0);
        let (a, b) = (ExtentId(1), ExtentId(2));
        fabric.inject_nth(Op::Write, 1, inject);
        let failed = match batch {
            false => store.write(a, &value(a, 1, 4096)).map(drop),
            true => {
                let mut items = extentmeta::Batch::new();
                items.write(a, value(a, 1, 4096));
                store.apply_batch(items).map(drop)
            }
        };
        assert!(failed.is_err(), "{what}");
        assert_eq!(store.space()[0].bad_bytes, u64::from(bad) * 4096, "{what}");
        let next = store.write(b, &value(b, 1, 4096)).unwrap();
        // The first location of a fresh device is at offset 0.
        assert_eq!(next.location().offset == 0, !bad, "{what}: {next:?}");
        assert_eq!(decode(&store.read(b).unwrap()), (b, 1));
    }
}
