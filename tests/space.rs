//! Space management through the store (issue 10): delete, space statistics,
//! device files that shrink, and planner-driven packing.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{decode, value};
use extentmeta::{
    Backend, CompactOutcome, DeviceSpaceStats, ExtentId, FileBackend, MemBackend, PlanGoal, State,
    Store, StoreConfig,
};
use std::sync::Arc;

const B: u64 = 4096;

fn config(cache_bytes: u64) -> StoreConfig {
    StoreConfig::builder()
        .cache_bytes(cache_bytes)
        .prefetch_workers(0)
        .build()
        .unwrap()
}

fn file_len(backend: &FileBackend, device: u16) -> u64 {
    std::fs::metadata(backend.device_path(device))
        .unwrap()
        .len()
}

/// Delete: the record goes vacant with its generation kept, a read is a typed
/// not-readable error (from the cache too), and a rewrite starts at the next
/// generation.
#[test]
fn a_deleted_extent_reads_as_a_typed_error_and_rewrites_at_the_next_generation() {
    let store = Store::new(MemBackend::new(1), config(1 << 20)).unwrap();
    let id = ExtentId(3);
    store.write(id, &value(id, 1, 5000)).unwrap();
    assert_eq!(decode(&store.read(id).unwrap()), (id, 1)); // now cached
    let deleted = store.delete(id).unwrap();
    assert_eq!((deleted.state(), deleted.generation()), (State::Vacant, 1));
    assert_eq!(store.read(id).unwrap_err().code(), "FPRE012");
    assert_eq!(
        store.delete(id).unwrap_err().code(),
        "FPRE012",
        "already gone"
    );
    let again = store.write(id, &value(id, 2, 300)).unwrap();
    assert_eq!(again.generation(), 2);
    assert_eq!(decode(&store.read(id).unwrap()), (id, 2));
}

/// Delete frees the location (after the grace period, immediate with no reader)
/// and the space statistics show it exactly; the freed tail lowers `file_bytes`.
#[test]
fn delete_frees_space_and_the_statistics_are_exact() {
    let store = Store::new(MemBackend::new(1), config(0)).unwrap();
    let sizes = [5000usize, 100, 3 * 4096];
    for (i, &len) in sizes.iter().enumerate() {
        let id = ExtentId(i as u64);
        store.write(id, &value(id, 1, len)).unwrap();
    }
    // Field by field: the struct is `non_exhaustive`, so no struct expression.
    let expect = |file, live, free, holes, largest| {
        let mut s = DeviceSpaceStats::default();
        (s.device, s.capacity_bytes, s.file_bytes) = (0, 1 << 40, file * B);
        (s.live_bytes, s.free_bytes, s.holes) = (live * B, free * B, holes);
        (s.largest_hole_bytes, s.bad_bytes, s.degraded) = (largest * B, 0, false);
        s
    };
    assert_eq!(store.space(), [expect(6, 6, 0, 0, 0)]);
    store.delete(ExtentId(0)).unwrap(); // blocks 0-1
    assert_eq!(store.space(), [expect(6, 4, 2, 1, 2)]);
    store.delete(ExtentId(2)).unwrap(); // blocks 3-5: the tail
    assert_eq!(store.space(), [expect(3, 1, 2, 1, 2)]);
    assert_eq!(store.stats().retired_pending, 0);
}

/// Invariant: a read concurrent with a delete returns the old bytes (of the right
/// extent and generation) or the typed error, never other bytes; the freed space is
/// reused by the writers meanwhile.
#[test]
fn reads_racing_deletes_get_the_old_bytes_or_the_error() {
    let store = Arc::new(Store::new(MemBackend::new(2), config(64 << 10)).unwrap());
    let ids = 16u64;
    let rounds = 60u64;
    std::thread::scope(|s| {
        for r in 0..2 {
            let store = Arc::clone(&store);
            s.spawn(move || {
                for n in 0..rounds * ids {
                    let id = ExtentId((n * 7 + r) % ids);
                    match store.read(id) {
                        Ok(bytes) => assert_eq!(decode(&bytes).0, id),
                        Err(e) => {
                            assert!(matches!(e.code(), "FPRE012" | "FPRE011"), "unexpected {e}")
                        }
                    }
                }
            });
        }
        for round in 0..rounds {
            for i in 0..ids {
                let id = ExtentId(i);
                let generation = store.snapshot(id).unwrap().generation() + 1;
                store
                    .write(
                        id,
                        &value(id, generation, 200 + ((i + round) as usize * 97) % 9000),
                    )
                    .unwrap();
                if (i + round) % 3 == 0 {
                    store.delete(id).unwrap();
                }
            }
        }
    });
    for i in 0..ids {
        let id = ExtentId(i);
        let s = store.snapshot(id).unwrap();
        match store.read(id) {
            Ok(bytes) => assert_eq!(decode(&bytes), (id, s.generation())),
            Err(e) => assert_eq!((e.code(), s.state()), ("FPRE012", State::Vacant)),
        }
    }
}

/// Device files shrink when their tail is free: at once past the automatic
/// threshold (1 MiB), and on `reclaim_space` below it; never below a live byte.
#[test]
fn device_files_shrink_to_the_high_water() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(FileBackend::open(dir.path(), 1).unwrap());
    let store = Store::new(Arc::clone(&backend), config(0)).unwrap();
    for i in 0..40u64 {
        let id = ExtentId(i);
        store.write(id, &value(id, 1, 64 << 10)).unwrap();
    }
    assert_eq!(file_len(&backend, 0), 40 * (64 << 10));
    for i in 20..40u64 {
        store.delete(ExtentId(i)).unwrap();
    }
    let high_water = store.space()[0].file_bytes;
    assert_eq!(high_water, 20 * (64 << 10));
    assert_eq!(
        file_len(&backend, 0),
        high_water,
        "trimmed without being asked"
    );
    store.delete(ExtentId(19)).unwrap(); // 64 KiB: below the threshold
    assert_eq!(file_len(&backend, 0), high_water, "small tails wait");
    assert_eq!(store.reclaim_space().unwrap(), 64 << 10);
    assert_eq!(file_len(&backend, 0), 19 * (64 << 10));
    for i in 0..19u64 {
        let id = ExtentId(i);
        assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    }
}

/// `MemBackend::trim` truncates; the default trim keeps everything.
#[test]
fn mem_backend_trim_only_shrinks() {
    let m = MemBackend::new(1);
    m.write_at(extentmeta::Location::new(0, 0, 100), &[7; 100])
        .unwrap();
    m.trim(0, 200).unwrap();
    assert_eq!(m.device_len(0), 100, "never extends");
    m.trim(0, 40).unwrap();
    assert_eq!(m.device_len(0), 40);
    assert!(m.trim(9, 0).is_err(), "unknown device is a typed error");
}

/// The planner's drain goal lists exactly the readable extents of the device.
#[test]
fn drain_plan_lists_the_device_s_extents() {
    let store = Store::new(MemBackend::new(2), config(0)).unwrap();
    for i in 0..10u64 {
        let id = ExtentId(i);
        store.write(id, &value(id, 1, 1000)).unwrap();
    }
    store.delete(ExtentId(4)).unwrap();
    let mut plan = store.plan_compaction(&PlanGoal::Drain { device: 1 });
    plan.sort_unstable();
    let mut want: Vec<ExtentId> = (0..10)
        .map(ExtentId)
        .filter(|&id| {
            let s = store.snapshot(id).unwrap();
            s.is_readable() && s.location().device == 1
        })
        .collect();
    want.sort_unstable();
    assert!(!want.is_empty());
    assert_eq!(plan, want);
}

/// Packing the planner's choice moves the highest extents into holes below them,
/// the file shrinks to the target share of holes, and every byte reads back.
#[test]
fn planned_packing_shrinks_a_fragmented_file() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(FileBackend::open(dir.path(), 1).unwrap());
    let store = Store::new(Arc::clone(&backend), config(0)).unwrap();
    for i in 0..64u64 {
        let id = ExtentId(i);
        store.write(id, &value(id, 1, 8192)).unwrap();
    }
    for i in (0..64u64).step_by(2) {
        store.delete(ExtentId(i)).unwrap(); // every other one: 50 % holes
    }
    store.reclaim_space().unwrap();
    let before = store.space()[0];
    assert_eq!(
        before.free_bytes * 2,
        before.file_bytes,
        "every other extent deleted"
    );
    let plan = store.plan_compaction(&PlanGoal::FreeRatio { target: 0.1 });
    assert!(!plan.is_empty());
    let outcomes = store.pack(&plan);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(CompactOutcome::Committed(_))))
    );
    let after = store.space()[0];
    assert_eq!(after.live_bytes, before.live_bytes);
    assert!(
        after.free_bytes as f64 <= 0.1 * after.file_bytes as f64,
        "{after:?}"
    );
    assert_eq!(file_len(&backend, 0), after.file_bytes);
    assert!(
        store
            .plan_compaction(&PlanGoal::FreeRatio { target: 0.1 })
            .is_empty()
    );
    for i in (1..64u64).step_by(2) {
        let id = ExtentId(i);
        assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    }
}

/// One planner pass plus `pack` reaches the target on every device of a
/// multi-device store, and every byte reads back.
#[test]
fn planned_packing_reaches_the_target_on_every_device() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(FileBackend::open(dir.path(), 2).unwrap());
    let store = Store::new(Arc::clone(&backend), config(0)).unwrap();
    for i in 0..128u64 {
        let id = ExtentId(i);
        store
            .write(id, &value(id, 1, 4096 * (1 + (i * 7 % 13) as usize)))
            .unwrap();
    }
    // Writes alternate the devices; extents of 4 to 52 KiB, two in five deleted
    // from each device.
    let deleted = |i: u64| (i * 11) % 5 < 2;
    for i in (0..128u64).filter(|&i| deleted(i)) {
        store.delete(ExtentId(i)).unwrap();
    }
    for before in store.space() {
        assert!(before.free_bytes * 4 >= before.file_bytes, "{before:?}");
    }
    store.reclaim_space().unwrap();
    let plan = store.plan_compaction(&PlanGoal::FreeRatio { target: 0.1 });
    assert!(!plan.is_empty());
    let outcomes = store.pack(&plan);
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    for (device, after) in store.space().iter().enumerate() {
        assert!(
            after.free_bytes as f64 <= 0.1 * after.file_bytes as f64,
            "device {device}: {after:?}"
        );
        assert_eq!(file_len(&backend, device as u16), after.file_bytes);
    }
    for i in (0..128u64).filter(|&i| !deleted(i)) {
        let id = ExtentId(i);
        assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    }
}

/// Invariant: releasing tails never cuts a byte that was handed out: writers,
/// deleters and a thread calling `reclaim_space` race on one device, and every
/// live extent still reads back whole (a cut would be a short read or a checksum
/// mismatch), with the device never shorter than its high-water.
#[test]
fn tail_release_racing_writes_never_cuts_live_bytes() {
    let backend = Arc::new(MemBackend::new(1));
    let store = Arc::new(Store::new(Arc::clone(&backend), config(0)).unwrap());
    let ids = 24u64;
    // Rounds until one released a tail while the writers ran (a round is a
    // few milliseconds; the reclaimer may find no free tail in one of them).
    let mut released = 0;
    for _ in 0..50 {
        if released > 0 {
            break;
        }
        let writing = std::sync::atomic::AtomicU64::new(2);
        released = std::thread::scope(|s| {
            for w in 0..2u64 {
                let (store, writing) = (Arc::clone(&store), &writing);
                s.spawn(move || {
                    for n in 0..150u64 {
                        let id = ExtentId(w * ids / 2 + (n * 5) % (ids / 2));
                        let generation = store.snapshot(id).unwrap().generation() + 1;
                        let len = 1000 + ((n * 7919 + w * 31) % (96 << 10)) as usize;
                        store.write(id, &value(id, generation, len)).unwrap();
                        if n % 3 == w {
                            store.delete(id).unwrap();
                        }
                    }
                    // Release: pairs with the reclaimer's Acquire load.
                    writing.fetch_sub(1, std::sync::atomic::Ordering::Release);
                });
            }
            let store = Arc::clone(&store);
            let writing = &writing;
            // Releases tails for as long as the writers run, and counts them: the
            // race is only tested if it released something while they wrote.
            s.spawn(move || {
                let mut released = 0;
                // Acquire: pairs with each writer's Release as it finishes.
                while writing.load(std::sync::atomic::Ordering::Acquire) > 0 {
                    released += store.reclaim_space().unwrap();
                    std::thread::yield_now();
                }
                released
            })
            .join()
            .unwrap()
        });
    }
    assert!(released > 0, "no tail was released while the writers ran");
    store.reclaim_space().unwrap();
    let live_end = (0..ids)
        .map(|i| store.snapshot(ExtentId(i)).unwrap())
        .filter(|s| s.is_readable())
        .map(|s| s.location().end())
        .max()
        .unwrap();
    let len = backend.device_len(0);
    assert!(
        len >= live_end,
        "device {len} shorter than live data {live_end}"
    );
    assert!(
        len <= store.space()[0].file_bytes,
        "the free tail was released"
    );
    for i in 0..ids {
        let id = ExtentId(i);
        let s = store.snapshot(id).unwrap();
        match store.read(id) {
            Ok(bytes) => assert_eq!(decode(&bytes), (id, s.generation())),
            Err(e) => assert_eq!((e.code(), s.state()), ("FPRE012", State::Vacant)),
        }
    }
}

/// A plan is advice from one reading: an extent deleted since the plan was
/// made is a lost race for `pack` (it stays as it is, `Aborted`), not a
/// request to compact a vacant extent (FPRE002, a caller bug).
#[test]
fn packing_an_extent_deleted_since_the_plan_is_a_lost_race() {
    let store = Store::new(MemBackend::new(1), config(0)).unwrap();
    for i in 0..16u64 {
        let id = ExtentId(i);
        store.write(id, &value(id, 1, 8192)).unwrap();
    }
    for i in (0..16u64).step_by(2) {
        store.delete(ExtentId(i)).unwrap();
    }
    store.reclaim_space().unwrap();
    let plan = store.plan_compaction(&PlanGoal::FreeRatio { target: 0.0 });
    assert!(plan.len() >= 2, "{plan:?}");
    store.delete(plan[0]).unwrap();
    let outcomes = store.pack(&plan);
    assert!(
        matches!(outcomes[0], Ok(CompactOutcome::Aborted)),
        "{:?}",
        outcomes[0]
    );
    assert!(outcomes[1..].iter().all(Result::is_ok), "{outcomes:?}");
    for i in (1..16u64).step_by(2).filter(|&i| ExtentId(i) != plan[0]) {
        let id = ExtentId(i);
        assert_eq!(decode(&store.read(id).unwrap()), (id, 1));
    }
}

/// A memory backend whose `trim` panics: an engine's backend with a bug.
#[derive(Debug)]
struct PanickingTrim(MemBackend);

impl Backend for PanickingTrim {
    fn device_count(&self) -> u16 {
        self.0.device_count()
    }
    fn read_at(&self, location: extentmeta::Location, buf: &mut [u8]) -> extentmeta::Result<()> {
        self.0.read_at(location, buf)
    }
    fn write_at(&self, location: extentmeta::Location, bytes: &[u8]) -> extentmeta::Result<()> {
        self.0.write_at(location, bytes)
    }
    fn sync(&self, device: u16) -> extentmeta::Result<()> {
        self.0.sync(device)
    }
    fn trim(&self, _: u16, _: u64) -> extentmeta::Result<()> {
        panic!("trim has a bug")
    }
}

/// The store releases freed device tails by itself after a write or delete;
/// a backend panicking there is an I/O error of `reclaim_space`, and never
/// reaches the thread whose write or delete was already acknowledged.
#[test]
fn a_panicking_trim_never_reaches_an_acknowledged_call() {
    let store = Store::new(PanickingTrim(MemBackend::new(1)), config(0)).unwrap();
    for i in 0..256u64 {
        let id = ExtentId(i);
        store.write(id, &value(id, 1, 8192)).unwrap();
    }
    // Deleting from the top frees more than the 1 MiB tail that makes a
    // write or delete release it.
    for i in (0..256u64).rev() {
        store.delete(ExtentId(i)).unwrap();
    }
    let err = store.reclaim_space().unwrap_err();
    assert_eq!(err.code(), "FPRE009", "{err}");
    let id = ExtentId(7);
    store.write(id, &value(id, 2, 100)).unwrap();
    assert_eq!(decode(&store.read(id).unwrap()), (id, 2));
}

/// A `close` that begins while `pack` runs ends it: the extents not moved yet
/// are refused (`Shutdown`), no compaction starts after the close, and every
/// extent still reads what was written (here the close comes from a listener
/// of the first move, on the packing thread itself).
#[test]
fn pack_starts_no_compaction_once_close_began() {
    let store = Arc::new(Store::new(MemBackend::new(1), config(0)).unwrap());
    for i in 0..16u64 {
        let id = ExtentId(i);
        store.write(id, &value(id, 1, 4096)).unwrap();
    }
    for i in (0..16u64).step_by(2) {
        store.delete(ExtentId(i)).unwrap();
    }
    let plan = store.plan_compaction(&PlanGoal::FreeRatio { target: 0.0 });
    assert!(plan.len() > 2, "{plan:?}");
    let weak = Arc::downgrade(&store);
    store.set_listener(move |event| {
        if matches!(event, extentmeta::events::Event::Relocated { .. })
            && let Some(store) = weak.upgrade()
        {
            let _ = store.close();
        }
    });
    let outcomes = store.pack(&plan);
    assert!(matches!(outcomes[0], Ok(CompactOutcome::Committed(_))));
    assert!(
        outcomes[1..]
            .iter()
            .all(|o| o.as_ref().is_err_and(|e| e.code() == "FPRE017")),
        "{outcomes:?}"
    );
}
