//! What an engine needs around the store (issue 10): close, serialized writes,
//! events, latency histograms.

mod common;

use common::fault_backend::{FaultBackend, Op};
use common::{decode, value, wait_until};
use extentmeta::events::{Event, Relocation};
use extentmeta::{Batch, Error, ExtentId, MemBackend, Result, Store, StoreConfig, Tag, Verdict};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
/// happens after close begins. Dropping the store stops prefetch the same way (it
/// once let the worker load every queued hint, about 1 000 loads of 3 ms, before
/// it exited).
#[test]
fn close_or_drop_drops_queued_prefetch_instead_of_loading_it() {
    let backend = FaultBackend::new(1);
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
    // The worker's first load is held in the backend: every other hint is
    // still queued when close begins, whatever the threads' timing.
    let gate = backend.gate_next(Op::Read);
    assert!(store.prefetch(&ids) > 250);
    gate.wait_entered();
    let before = backend.calls(Op::Read);
    let store = Arc::new(store);
    let closer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.close())
    };
    // Close has begun once writes are refused (writes read nothing).
    let probe = ExtentId(400);
    wait_until(|| store.write(probe, &value(probe, 1, 64)).is_err());
    gate.release();
    closer.join().unwrap().unwrap();
    assert_eq!(
        backend.calls(Op::Read),
        before,
        "no load after close began but the one it waited for"
    );
    assert_eq!(before, 1, "the held load was the only one");

    // Dropped instead of closed.
    let backend = FaultBackend::new(2);
    let config = StoreConfig::builder()
        .cache_bytes(64 << 20)
        .prefetch_workers(1)
        .prefetch_queue(1000)
        .build()
        .unwrap();
    let store = Store::new(Arc::clone(&backend), config).unwrap();
    let ids: Vec<ExtentId> = (0..1000).map(ExtentId).collect();
    for &id in &ids {
        store.write(id, &value(id, 1, 64)).unwrap();
    }
    backend.set_read_delay(Duration::from_millis(3));
    assert_eq!(store.prefetch(&ids), 1000, "every hint fits the queue");
    let before = backend.calls(Op::Read);
    drop(store);
    let loaded = backend.calls(Op::Read) - before;
    // The worker may have a load in flight and may pick up one more hint before it
    // sees the flag: never the rest of the queue.
    assert!(
        loaded <= 4,
        "drop loaded {loaded} queued hints; it must stop after the load in flight"
    );
}

#[test]
fn writes_of_one_extent_serialize_and_try_write_fails_fast() {
    let backend = FaultBackend::new(1);
    let store = Arc::new(Store::new(Arc::clone(&backend), StoreConfig::default()).unwrap());
    let id = ExtentId(9);
    let sync = backend.gate_next(Op::Sync);
    let first = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.write(id, &value(id, 1, 100)))
    };
    // The first write reaches its sync and is held there.
    sync.wait_entered();
    assert_eq!(
        store.try_write(id, &value(id, 2, 100)).unwrap_err().code(),
        "FPRE015",
        "try_write does not wait"
    );
    let second = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.write(id, &value(id, 2, 100)))
    };
    sync.release();
    assert_eq!(first.join().unwrap().unwrap().generation(), 1);
    assert_eq!(
        second.join().unwrap().unwrap().generation(),
        2,
        "waited its turn"
    );
    assert_eq!(decode(&store.read(id).unwrap()), (id, 2));
}

/// A delete and a batch wait for a write of an extent they name, as a write
/// does, then go on in turn; with no wait allowed they fail fast, typed, and
/// change nothing.
#[test]
fn a_delete_and_a_batch_wait_for_a_write_of_their_extent() {
    for wait_ms in [60_000, 0] {
        let backend = FaultBackend::new(1);
        let config = StoreConfig::builder()
            .write_wait_ms(wait_ms)
            .build()
            .unwrap();
        let store = Arc::new(Store::new(Arc::clone(&backend), config).unwrap());
        let (a, b) = (ExtentId(5), ExtentId(6));
        store.write(b, &value(b, 1, 100)).unwrap();
        let sync = backend.gate_next(Op::Sync);
        let first = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || store.write(a, &value(a, 1, 100)))
        };
        // The write of `a` reaches its sync and is held there.
        sync.wait_entered();
        let delete = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || store.delete(a))
        };
        let batch = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut batch = Batch::new();
                batch.write(a, value(a, 2, 100)).delete(b);
                store.apply_batch(batch)
            })
        };
        if wait_ms == 0 {
            let err = delete.join().unwrap().unwrap_err();
            assert!(matches!(err, Error::WriteInProgress { extent } if extent == a));
            let err = batch.join().unwrap().unwrap_err();
            assert!(matches!(err, Error::WriteInProgress { extent } if extent == a));
            sync.release();
            assert_eq!(first.join().unwrap().unwrap().generation(), 1);
            assert_eq!(decode(&store.read(a).unwrap()), (a, 1), "nothing changed");
            assert_eq!(decode(&store.read(b).unwrap()), (b, 1), "nothing changed");
            continue;
        }
        // Time for both to meet the held write before it ends: a store that
        // waits passes whatever the timing; this lets the test catch one that
        // fails at once (which it otherwise might miss if the threads came
        // late).
        std::thread::sleep(Duration::from_millis(50));
        sync.release();
        assert_eq!(first.join().unwrap().unwrap().generation(), 1);
        let deleted = delete.join().unwrap().expect("the delete waits its turn");
        let batched = batch.join().unwrap().expect("the batch waits its turn");
        assert_eq!(batched.len(), 2);
        assert_eq!(
            batched[0].generation(),
            2,
            "the batch wrote after the write"
        );
        // Both took their turn after the write, in either order.
        match deleted.generation() {
            1 => assert_eq!(
                decode(&store.read(a).unwrap()),
                (a, 2),
                "delete, then batch"
            ),
            2 => assert_eq!(
                store.read(a).unwrap_err().code(),
                "FPRE012",
                "batch, then delete"
            ),
            other => panic!("the delete ended generation {other}"),
        }
        assert_eq!(store.read(b).unwrap_err().code(), "FPRE012");
    }
}

#[test]
fn a_write_that_waits_too_long_fails_with_a_typed_error() {
    let backend = FaultBackend::new(1);
    let config = StoreConfig::builder().write_wait_ms(0).build().unwrap();
    let store = Arc::new(Store::new(Arc::clone(&backend), config).unwrap());
    let id = ExtentId(4);
    let sync = backend.gate_next(Op::Sync);
    let first = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.write(id, &value(id, 1, 100)))
    };
    sync.wait_entered();
    let err = store.write(id, &value(id, 2, 100)).unwrap_err();
    assert!(matches!(err, Error::WriteInProgress { extent } if extent == id));
    sync.release();
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
    let (tag_a2, tag_b1) = (Tag::new(b"a gen 2").unwrap(), Tag::new(b"b gen 1").unwrap());
    let w2 = store.write_tagged(a, &value(a, 2, 64), tag_a2).unwrap();
    let batch = store
        .write_batch_tagged(&[(b, value(b, 1, 64).as_slice(), tag_b1)])
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
            Event::Written {
                seq: 0,
                record: w1,
                tag: Tag::EMPTY
            },
            Event::Written {
                seq: 1,
                record: w2,
                tag: tag_a2
            },
            Event::Written {
                seq: 2,
                record: batch[0],
                tag: tag_b1
            },
            Event::Relocated {
                seq: 3,
                record: moved,
                tag: tag_a2,
                from: before,
                cause: Relocation::Compaction
            },
            // The deleted generation's tag: the engine's key of what went.
            // Numbers run from 0 on a new store, one per change.
            Event::Deleted {
                seq: 4,
                record: deleted,
                tag: tag_b1
            },
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

/// Quarantine and remap events come from the integrity ladder: the media under
/// the extent flips a byte of every read, and the backend serves a good copy.
#[test]
fn quarantine_and_remap_are_events() {
    let backend = FaultBackend::new(2);
    let store = Store::new(Arc::clone(&backend), StoreConfig::default()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    store.set_listener(move |e: &Event| sink.lock().expect("lock").push(e.clone()));
    let id = ExtentId(7);
    let bytes = value(id, 1, 128);
    store.write(id, &bytes).unwrap();
    backend.add_replica(id, 1, bytes);
    let at = store.snapshot(id).unwrap().location();
    backend.flip_reads_at(at);
    assert!(matches!(
        store.verify(id).unwrap(),
        Verdict::Repaired { .. }
    ));
    let seen = seen.lock().expect("lock").clone();
    // The location is retired as the repair starts, before the record moves.
    assert!(matches!(&seen[1], Event::LocationRetired { location } if *location == at));
    assert!(matches!(&seen[2], Event::Quarantined { record, .. } if record.extent() == id));
    assert!(matches!(
        &seen[3],
        Event::Relocated { record, from, cause: Relocation::Remap, .. } if record.extent() == id && *from == at
    ));
    assert_eq!(seen.len(), 4, "{seen:?}");
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

/// An engine's manifest kept as a log of the listener's records holds several
/// per extent, in the order the events came (which two racing writes of one
/// extent may swap): `with_records` keeps the highest version of each, in
/// whatever order they come.
#[test]
fn with_records_keeps_the_newest_version_of_each_extent_in_any_order() {
    let backend = Arc::new(MemBackend::new(1));
    let store = Store::new(Arc::clone(&backend), StoreConfig::default()).unwrap();
    let mut log = Vec::new();
    for generation in 1..=3 {
        let e = ExtentId(4);
        log.push(store.write(e, &value(e, generation, 64)).unwrap());
    }
    drop(store);
    // The newest first, as if its event had overtaken the others.
    log.reverse();
    let store = Store::with_records(backend, StoreConfig::default(), log).unwrap();
    assert_eq!(
        decode(&store.read(ExtentId(4)).unwrap()),
        (ExtentId(4), 3),
        "generation 3 of extent 4"
    );
}

/// The manifest flow across a process restart: the listener appends each
/// record's encoding to a file (an engine's manifest), the store goes away,
/// and a new one is made from what the file holds, decoded, with every write,
/// overwrite, delete and compaction as it was. A damaged manifest, or two
/// records on one location, are FPRE039 (the caller's records, not a
/// checkpoint of a directory there is none of).
#[test]
fn a_manifest_kept_in_a_file_restarts_the_store_and_damage_to_it_is_fpre039() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("MANIFEST");
    let backend = Arc::new(MemBackend::new(2));
    {
        let store = Store::new(Arc::clone(&backend), StoreConfig::default()).unwrap();
        let file = Mutex::new(std::fs::File::create(&path).unwrap());
        store.set_listener(move |e: &Event| {
            let record = match e {
                Event::Written { record, .. } | Event::Deleted { record, .. } => record,
                Event::Relocated { record, .. } => record,
                _ => return,
            };
            file.lock().unwrap().write_all(&record.to_bytes()).unwrap();
        });
        for id in 0..6 {
            let e = ExtentId(id);
            store
                .write(e, &value(e, 1, 300 + 97 * id as usize))
                .unwrap();
        }
        let e = ExtentId(2);
        store.write(e, &value(e, 2, 5000)).unwrap();
        store.delete(ExtentId(4)).unwrap();
        assert!(matches!(
            store.compact(ExtentId(1)).unwrap(),
            extentmeta::CompactOutcome::Committed(_)
        ));
    }
    let kept = std::fs::read(&path).unwrap();
    let records: Vec<extentmeta::Snapshot> = kept
        .chunks(extentmeta::Snapshot::ENCODED_LEN)
        .map(|b| extentmeta::Snapshot::from_bytes(b).unwrap())
        .collect();
    assert_eq!(records.len(), 9, "7 writes, a delete and a compaction");
    let store = Store::with_records(
        Arc::clone(&backend),
        StoreConfig::default(),
        records.clone(),
    )
    .unwrap();
    for (id, generation) in [(0, 1), (1, 1), (2, 2), (3, 1), (5, 1)] {
        let e = ExtentId(id);
        assert_eq!(decode(&store.read(e).unwrap()), (e, generation));
    }
    assert_eq!(store.read(ExtentId(4)).unwrap_err().code(), "FPRE012");
    drop(store);
    // One flipped bit of the file.
    let mut damaged = kept.clone();
    damaged[3 * extentmeta::Snapshot::ENCODED_LEN + 17] ^= 0x10;
    let err = (damaged.chunks(extentmeta::Snapshot::ENCODED_LEN))
        .map(extentmeta::Snapshot::from_bytes)
        .collect::<Result<Vec<_>>>()
        .unwrap_err();
    assert_eq!(err.code(), "FPRE039", "{err}");
    // Extent 5's record moved onto extent 3's location.
    let (three, five) = (records[3], records[5]);
    assert_eq!((three.extent(), five.extent()), (ExtentId(3), ExtentId(5)));
    let moved = extentmeta::Snapshot::committed(
        five.extent(),
        five.version(),
        five.state(),
        five.generation(),
        three.location(),
        five.checksum(),
    )
    .unwrap();
    let err = Store::with_records(backend, StoreConfig::default(), [three, moved]).unwrap_err();
    assert_eq!(err.code(), "FPRE039", "{err}");
    assert!(err.to_string().contains("overlapping"), "{err}");
}

/// Writes extents 0 to 3 (3 000 bytes each, generation 1) and compacts
/// extent 1: the location the move left.
fn write_four_and_move_one(store: &Store) -> extentmeta::Location {
    let fail = |e: Error| -> ! { panic!("{e}") };
    for id in 0..4 {
        let e = ExtentId(id);
        store
            .write(e, &value(e, 1, 3000))
            .unwrap_or_else(|e| fail(e));
    }
    let old = (store.snapshot(ExtentId(1)).unwrap_or_else(|e| fail(e))).location();
    assert!(matches!(
        store.compact(ExtentId(1)).unwrap_or_else(|e| fail(e)),
        extentmeta::CompactOutcome::Committed(_)
    ));
    old
}

/// A listener that cannot persist a relocation panics, and the store then
/// keeps the old location out of use: the manifest, which still names it,
/// reads the same generation there after a restart. With a listener that
/// returns, the same run hands the old location to a later write.
#[test]
fn a_relocation_a_listener_failed_to_persist_leaves_its_old_location_in_place() {
    for fails in [false, true] {
        let backend = Arc::new(MemBackend::new(1));
        let store = Store::new(Arc::clone(&backend), StoreConfig::default()).unwrap();
        let manifest = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&manifest);
        store.set_listener(move |e: &Event| match e {
            Event::Written { record, .. } => sink.lock().unwrap().push(*record),
            Event::Relocated { record, .. } if fails => {
                let _ = record;
                panic!("the manifest's disk is full")
            }
            Event::Relocated { record, .. } => sink.lock().unwrap().push(*record),
            _ => {}
        });
        let old = write_four_and_move_one(&store);
        assert_eq!(store.stats().listener_panics, u64::from(fails));
        assert_eq!(store.stats().locations_kept_for_listeners, u64::from(fails));
        let overlaps = |l: extentmeta::Location| {
            l.device == old.device
                && l.offset < old.offset + u64::from(old.length)
                && old.offset < l.offset + u64::from(l.length)
        };
        let reused = (10..40).any(|id| {
            let e = ExtentId(id);
            overlaps(store.write(e, &value(e, 1, 3000)).unwrap().location())
        });
        assert_eq!(reused, !fails, "fails: {fails}");
        drop(store);
        if fails {
            let records = manifest.lock().unwrap().clone();
            let store = Store::with_records(backend, StoreConfig::default(), records).unwrap();
            assert_eq!(store.snapshot(ExtentId(1)).unwrap().location(), old);
            assert_eq!(decode(&store.read(ExtentId(1)).unwrap()), (ExtentId(1), 1));
        }
    }
}

/// A location that failed for good is reported to the listeners
/// (`LocationRetired`); an engine that keeps it in its manifest hands it back
/// with `with_manifest`, and the restarted store never places new data
/// there. Without it (`with_records`), the location is free again.
#[test]
fn a_retired_location_kept_in_the_manifest_stays_out_of_use_after_a_restart() {
    let fabric = FaultBackend::new(1);
    let store = Store::new(Arc::clone(&fabric), StoreConfig::default()).unwrap();
    let manifest = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let sink = Arc::clone(&manifest);
    store.set_listener(move |e: &Event| {
        let mut m = sink.lock().unwrap();
        match e {
            Event::LocationRetired { location } => m.1.push(*location),
            e => m.0.extend(e.record()),
        }
    });
    for id in 0..4 {
        let e = ExtentId(id);
        store.write(e, &value(e, 1, 3000)).unwrap();
    }
    let bad = store.snapshot(ExtentId(2)).unwrap().location();
    fabric.flip_reads_at(bad);
    assert_eq!(store.verify(ExtentId(2)).unwrap_err().code(), "FPRE004");
    // Verified again (a scrub pass), still without a good copy: the location
    // is reported once, not at every pass.
    assert_eq!(store.verify(ExtentId(2)).unwrap(), Verdict::Quarantined);
    // The engine gives up on extent 2 and writes it again elsewhere.
    let e = ExtentId(2);
    store.write(e, &value(e, 2, 3000)).unwrap();
    drop(store);
    fabric.disarm();
    let (records, retired) = manifest.lock().unwrap().clone();
    assert_eq!(retired, vec![bad]);
    let overlaps = |l: extentmeta::Location| {
        l.device == bad.device
            && l.offset < bad.offset + u64::from(bad.length)
            && bad.offset < l.offset + u64::from(l.length)
    };
    for keep in [true, false] {
        let store = match keep {
            true => Store::with_manifest(
                Arc::clone(&fabric),
                StoreConfig::default(),
                records.clone(),
                retired.clone(),
            ),
            false => {
                Store::with_records(Arc::clone(&fabric), StoreConfig::default(), records.clone())
            }
        }
        .unwrap();
        assert_eq!(decode(&store.read(ExtentId(2)).unwrap()), (ExtentId(2), 2));
        assert_eq!(store.space()[0].bad_bytes > 0, keep);
        let reused = (10..20).any(|id| {
            let e = ExtentId(id);
            overlaps(store.write(e, &value(e, 1, 3000)).unwrap().location())
        });
        assert_eq!(reused, !keep, "keep: {keep}");
    }
}

/// A durable store's journal is its truth: a listener that panics (a
/// channel whose receiver went away) costs it no space, and the location a
/// compaction left is handed out again.
#[test]
fn a_durable_store_frees_what_a_change_left_whatever_its_listeners_do() {
    let tmp = tempfile::tempdir().unwrap();
    let config = StoreConfig::builder().devices(1).build().unwrap();
    let store = Store::open(tmp.path(), config).unwrap();
    store.set_listener(|_: &Event| panic!("the receiver went away"));
    let old = write_four_and_move_one(&store);
    let reused = (10..40).any(|id| {
        let e = ExtentId(id);
        store.write(e, &value(e, 1, 3000)).unwrap().location() == old
    });
    assert!(reused);
    let stats = store.stats();
    assert!(stats.listener_panics >= 6, "{}", stats.listener_panics);
    assert_eq!(stats.locations_kept_for_listeners, 0);
}

/// `with_records` answers in the caller's terms: an id past `max_extents` is
/// `ExtentOutOfRange` (it was a configuration error naming a directory there
/// is none of), and a snapshot of an id never written (version 0) is skipped,
/// not taken for a corrupt checkpoint.
#[test]
fn with_records_refuses_an_id_out_of_range_and_skips_a_record_never_written() {
    let backend = Arc::new(MemBackend::new(1));
    let big = extentmeta::TableConfig::builder()
        .max_extents(1 << 27)
        .build()
        .unwrap();
    let config = StoreConfig::builder().table(big).build().unwrap();
    let store = Store::new(Arc::clone(&backend), config).unwrap();
    let far = ExtentId(1 << 26);
    let written = store.write(far, &value(far, 1, 64)).unwrap();
    let never = store.snapshot(ExtentId(3)).unwrap();
    assert_eq!(never.version(), 0);
    let near = store
        .write(ExtentId(5), &value(ExtentId(5), 1, 64))
        .unwrap();
    drop(store);
    let err = Store::with_records(
        Arc::clone(&backend),
        StoreConfig::default(),
        [near, written],
    )
    .unwrap_err();
    assert_eq!(err.code(), "FPRE005", "{err}");
    let store = Store::with_records(backend, StoreConfig::default(), [never, near]).unwrap();
    assert_eq!(decode(&store.read(ExtentId(5)).unwrap()), (ExtentId(5), 1));
    assert_eq!(store.read(ExtentId(3)).unwrap_err().code(), "FPRE012");
}
