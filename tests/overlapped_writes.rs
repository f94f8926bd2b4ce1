//! Writes past `inline_write_max` journal their record while their data syncs
//! (`overlap_data_sync`). A crash between the two leaves a durable record over
//! data that may not be: recovery reads that data, drops the record if it does
//! not verify (the write was never acknowledged), journals the record it
//! restored, and reports the extent. Once a later append carried the write's
//! marker, recovery trusts the record: a fault of its data is the verifier's to
//! report, never taken for a torn write.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
#![cfg(unix)]

mod common;

use common::fault_fs::{self, Cut, FaultFs, Faults, Hook, Rng, SyncVerdict, is_device};
use common::{decode, value};
use extentmeta::{ExtentId, Store, StoreConfig};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Every write overlaps (no inline writes), one device, no cache.
fn config() -> StoreConfig {
    StoreConfig::builder()
        .devices(1)
        .cache_bytes(0)
        .prefetch_workers(0)
        .inline_write_max(0)
        .metadata_reserve_bytes(16 << 10)
        .build()
        .unwrap()
}

fn val(id: u64, generation: u64) -> Vec<u8> {
    value(
        ExtentId(id),
        generation,
        700 + (id * 37 + generation * 11) as usize % 900,
    )
}

/// The generation `id` reads back.
fn read(store: &Store, id: u64) -> u64 {
    let bytes = store.read(ExtentId(id)).unwrap();
    let (got, generation) = decode(&bytes);
    assert_eq!(got, ExtentId(id));
    generation
}

/// Fails the first device sync once armed, dropping its pages: the record is
/// journaled, the data never reaches the disk.
#[derive(Debug, Default)]
struct DropNextDeviceSync {
    armed: AtomicBool,
}

impl Hook for DropNextDeviceSync {
    fn before_sync(&self, file: &str) -> SyncVerdict {
        match is_device(file) && self.armed.swap(false, Ordering::SeqCst) {
            true => SyncVerdict::Fail { drop_pages: true },
            false => SyncVerdict::Normal,
        }
    }
}

#[test]
fn a_record_whose_data_never_became_durable_is_dropped_and_stays_dropped() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let hook = Arc::new(DropNextDeviceSync::default());
    fs.set_hook(Arc::clone(&hook) as Arc<dyn Hook>);
    {
        let store = Store::open_in(Arc::new(fs.clone()), dir, config()).unwrap();
        for id in 0..4 {
            store.write(ExtentId(id), &val(id, 1)).unwrap();
        }
        hook.armed.store(true, Ordering::SeqCst);
        // The record reached the journal, its data was dropped: not
        // acknowledged, outcome unknown.
        let err = store.write(ExtentId(2), &val(2, 2)).unwrap_err();
        assert_eq!(err.code(), "FPRE028", "{err}");
        assert_eq!(read(&store, 2), 1, "not visible in this run");
        drop(store);
    }
    // A power cut: only synced bytes survive.
    fs.cut(&mut Rng::new(7), Cut::Synced);
    let store = Store::open(dir, config()).unwrap();
    let report = store.recovery().unwrap();
    assert_eq!(report.unsynced_dropped, vec![ExtentId(2)], "{report:?}");
    for id in 0..4 {
        assert_eq!(read(&store, id), 1, "extent {id}");
    }
    // The write after it takes a version no journal holds: it survives, and the
    // dropped record never comes back.
    store.write(ExtentId(2), &val(2, 3)).unwrap();
    drop(store);
    let store = Store::open(dir, config()).unwrap();
    assert_eq!(store.recovery().unwrap().unsynced_dropped, Vec::new());
    assert_eq!(read(&store, 2), 3);
    assert_eq!(read(&store, 1), 1);
}

#[test]
fn a_power_cut_keeps_every_acknowledged_overlapped_write() {
    for seed in 0..8 {
        let tmp = fault_fs::tempdir();
        let dir = tmp.path();
        let fs = FaultFs::new(dir, u64::MAX, Faults::default());
        {
            let store = Store::open_in(Arc::new(fs.clone()), dir, config()).unwrap();
            for generation in 1..=3 {
                for id in 0..6 {
                    store.write(ExtentId(id), &val(id, generation)).unwrap();
                }
            }
            // Dropped without `close`: the last writes' markers were never
            // journaled, so recovery reads their data.
            std::mem::forget(store);
        }
        fs.cut(&mut Rng::new(seed), Cut::AnySubset);
        let store = Store::open(dir, config()).unwrap();
        assert_eq!(store.recovery().unwrap().unsynced_dropped, Vec::new());
        for id in 0..6 {
            assert_eq!(read(&store, id), 3, "seed {seed} extent {id}");
        }
    }
}

#[test]
fn a_fault_after_the_marker_is_reported_not_taken_for_a_torn_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let location = {
        let store = Store::open(dir, config()).unwrap();
        let written = store.write(ExtentId(1), &val(1, 1)).unwrap();
        let rewritten = store.write(ExtentId(1), &val(1, 2)).unwrap();
        // A later append carries the second write's marker.
        store.write(ExtentId(9), &val(9, 1)).unwrap();
        assert_ne!(written.location(), rewritten.location());
        store.close().unwrap();
        rewritten.location()
    };
    rot_then_reopen(dir, location);
}

/// Bit rot in extent 1's acknowledged data at `location` while the store is
/// closed: the reopen keeps the record (its marker says the data was
/// durable), and a read reports the fault, neither the old value nor
/// success.
fn rot_then_reopen(dir: &std::path::Path, location: extentmeta::record::Location) {
    let device = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("dev0000.extents"))
        .unwrap();
    device.write_all_at(b"rot", location.offset + 20).unwrap();
    device.sync_all().unwrap();
    drop(device);
    let store = Store::open(dir, config()).unwrap();
    assert_eq!(store.recovery().unwrap().unsynced_dropped, Vec::new());
    let err = store.read(ExtentId(1)).unwrap_err();
    assert!(
        matches!(err.code(), "FPRE004" | "FPRE013"),
        "a damaged acknowledged write reads as a fault, not as its old value: {err}"
    );
}

/// After a device's data sync failed, every checkpoint fails until a reopen
/// (the device's syncs are refused, and a checkpoint syncs the devices before
/// its pointer names it): each failed rotation removes the image it wrote, so
/// they do not pile up and fill the disk; the second failing in a row fails
/// the journal (later changes FPRE036), so the journals do not pile up
/// either; and the acknowledged writes survive a reopen.
#[test]
fn checkpoints_failed_by_a_device_sync_leave_no_images_behind() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let hook = Arc::new(DropNextDeviceSync::default());
    fs.set_hook(Arc::clone(&hook) as Arc<dyn Hook>);
    let cfg = StoreConfig::builder()
        .devices(2)
        .cache_bytes(0)
        .prefetch_workers(0)
        .inline_write_max(0)
        .journal_max_bytes(16 << 10)
        .metadata_reserve_bytes(16 << 10)
        .build()
        .unwrap();
    let images = || {
        (std::fs::read_dir(dir).unwrap())
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("checkpoint-")
            })
            .count()
    };
    let mut acknowledged = Vec::new();
    {
        let store = Store::open_in(Arc::new(fs.clone()), dir, cfg.clone()).unwrap();
        hook.armed.store(true, Ordering::SeqCst);
        let err = store.write(ExtentId(1_000), &val(1_000, 1)).unwrap_err();
        assert_eq!(err.code(), "FPRE028", "{err}");
        let (before, number) = (store.stats().checkpoints, store.stats().journal_number);
        // Bounded: 16 KiB journals rotate every few dozen writes.
        let refused = (0..2000).find_map(|id| match store.write(ExtentId(id), &val(id, 1)) {
            Ok(_) => {
                acknowledged.push(id);
                None
            }
            Err(e) if e.code() == "FPRE028" => None,
            Err(e) => Some(e),
        });
        let err = refused.expect("the journal failed");
        assert_eq!(err.code(), "FPRE036", "{err}");
        common::wait_until(|| !store.stats().checkpoint_pending);
        let stats = store.stats();
        assert_eq!(stats.checkpoints, before, "every checkpoint failed");
        assert_eq!(
            stats.journal_number,
            number + 2,
            "two rotations ran: {stats:?}"
        );
        assert_eq!(images(), 1, "only the image the pointer names");
        assert!(acknowledged.len() > 20, "{} writes", acknowledged.len());
    }
    let store = Store::open_in(Arc::new(fs.clone()), dir, cfg).unwrap();
    for id in acknowledged {
        assert_eq!(read(&store, id), 1);
    }
}

/// Once armed, holds the next device sync until a journal sync has ended,
/// and 50 ms more: the flusher's group commit ends while the write's data is
/// still syncing, so the flusher stops expecting markers before the write
/// leaves one.
#[derive(Debug, Default)]
struct DataSyncAfterJournal {
    armed: AtomicBool,
    journal_synced: std::sync::Mutex<bool>,
    cond: std::sync::Condvar,
}

impl Hook for DataSyncAfterJournal {
    fn before_sync(&self, file: &str) -> SyncVerdict {
        if is_device(file) && self.armed.swap(false, Ordering::SeqCst) {
            let mut synced = self.journal_synced.lock().unwrap();
            // Bounded: the write's record is appended before its data syncs,
            // and the flusher leads its group commit at once.
            while !*synced {
                synced = self.cond.wait(synced).unwrap();
            }
            drop(synced);
            // A data sync that outlasts the flusher's wait after its group
            // (2 ms): the write then leaves its marker while the flusher waits
            // with no deadline. (A slower machine only makes this longer.)
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        SyncVerdict::Normal
    }

    fn after_sync(&self, file: &str, _failed: bool) {
        if fault_fs::is_journal(file) {
            *self.journal_synced.lock().unwrap() = true;
            self.cond.notify_all();
        }
    }
}

/// On an idle store, an overlapped write's marker is journaled by the flusher
/// soon after the write returns, not only by the next operation's append. The
/// flusher used to wait with no deadline once its group commit ended with no
/// marker pending, and nothing woke it when the write then left one: the
/// window in which recovery must read the write's data (and may take a later
/// fault of it for a torn write) stayed open until the store was next used.
#[test]
fn an_idle_store_journals_an_overlapped_writes_marker() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let hook = Arc::new(DataSyncAfterJournal::default());
    fs.set_hook(hook.clone());
    let store = Store::open_in(Arc::new(fs.clone()), dir, config()).unwrap();
    *hook.journal_synced.lock().unwrap() = false;
    hook.armed.store(true, Ordering::SeqCst);
    store.write(ExtentId(1), &val(1, 1)).unwrap();
    let after_write = store.stats().journal_bytes;
    // Only a hang fails on time: the deadline is far beyond the flusher's
    // 2 ms wait and one journal sync.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.stats().journal_bytes == after_write {
        assert!(
            std::time::Instant::now() < deadline,
            "the marker was never journaled on the idle store"
        );
        std::thread::yield_now();
    }
    assert_eq!(read(&store, 1), 1);
    store.close().unwrap();
}

/// Once armed, holds the next device sync until released: (held, released).
#[derive(Debug, Default)]
struct HoldNextDeviceSync {
    armed: AtomicBool,
    state: std::sync::Mutex<(bool, bool)>,
    cond: std::sync::Condvar,
}

impl HoldNextDeviceSync {
    fn wait_held(&self) {
        let mut state = self.state.lock().unwrap();
        // Bounded: the armed write reaches its data's sync.
        while !state.0 {
            state = self.cond.wait(state).unwrap();
        }
    }

    fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.cond.notify_all();
    }
}

impl Hook for HoldNextDeviceSync {
    fn before_sync(&self, file: &str) -> SyncVerdict {
        if is_device(file) && self.armed.swap(false, Ordering::SeqCst) {
            let mut state = self.state.lock().unwrap();
            state.0 = true;
            self.cond.notify_all();
            // Bounded: the test releases it.
            while !state.1 {
                state = self.cond.wait(state).unwrap();
            }
        }
        SyncVerdict::Normal
    }
}

/// A `close` that begins while an overlapped write's data still syncs (its
/// record already journaled) waits for that write's marker and carries it in
/// its own group: the write is acknowledged, and a fault of its data found
/// after the reopen is reported as one, not taken for a torn write (which
/// would roll the acknowledged write back). Without the wait, the marker was
/// left after the close marker, to no append.
#[test]
fn close_carries_the_marker_of_an_overlapped_write_it_met_in_flight() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let hook = Arc::new(HoldNextDeviceSync::default());
    fs.set_hook(hook.clone());
    let store = Arc::new(Store::open_in(Arc::new(fs.clone()), dir, config()).unwrap());
    store.write(ExtentId(1), &val(1, 1)).unwrap();
    hook.armed.store(true, Ordering::SeqCst);
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.write(ExtentId(1), &val(1, 2)))
    };
    hook.wait_held();
    let closer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.close())
    };
    // Time for `close` to reach its marker while the write's data syncs: a
    // store that waits passes whatever the timing; one that does not has
    // written its marker by now.
    std::thread::sleep(std::time::Duration::from_millis(50));
    hook.release();
    let rewritten = writer.join().unwrap().unwrap();
    closer.join().unwrap().unwrap();
    drop(store);
    rot_then_reopen(dir, rewritten.location());
}

/// Once armed, lets `allowed` journal syncs through and fails every later one
/// with its pages dropped: the journal holds what came before, nothing after.
#[derive(Debug, Default)]
struct FailJournalSyncsAfter {
    armed: AtomicBool,
    allowed: std::sync::atomic::AtomicU32,
}

impl Hook for FailJournalSyncsAfter {
    fn before_sync(&self, file: &str) -> SyncVerdict {
        if !common::fault_fs::is_journal(file) || !self.armed.load(Ordering::SeqCst) {
            return SyncVerdict::Normal;
        }
        let left = self.allowed.load(Ordering::SeqCst);
        if left > 0 {
            self.allowed.store(left - 1, Ordering::SeqCst);
            return SyncVerdict::Normal;
        }
        SyncVerdict::Fail { drop_pages: true }
    }
}

/// Extent 1 at generation 1 at the end of the device file, and a free
/// location below it (extent 0's, deleted): the next write of extent 1 takes
/// that one (first fit), and the location it leaves is the file's tail.
fn tail_record_over_a_hole(store: &Store) -> extentmeta::Snapshot {
    store.write(ExtentId(0), &val(0, 1)).unwrap();
    let first = store.write(ExtentId(1), &val(1, 1)).unwrap();
    store.delete(ExtentId(0)).unwrap();
    store.reclaim_space().unwrap();
    first
}

/// Until an overlapped write's marker is durable, a recovery that finds its
/// data damaged restores the record it replaced, so that record's location
/// is not freed: not handed to another write, and not cut off the file by
/// `reclaim_space` (after which every open would fail with `DeviceFile`).
/// Here the marker never reaches the journal, and the data rots: the reopen
/// restores generation 1 from its bytes.
#[test]
fn the_location_an_overlapped_write_replaced_waits_for_its_marker() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let hook = Arc::new(FailJournalSyncsAfter::default());
    fs.set_hook(Arc::clone(&hook) as Arc<dyn Hook>);
    let (first, rewritten) = {
        let store = Store::open_in(Arc::new(fs.clone()), dir, config()).unwrap();
        let first = tail_record_over_a_hole(&store);
        // The rewrite's record is journaled; its marker, and anything after
        // it, never is.
        hook.allowed.store(1, Ordering::SeqCst);
        hook.armed.store(true, Ordering::SeqCst);
        let rewritten = store.write(ExtentId(1), &val(1, 2)).unwrap();
        assert!(
            rewritten.location().end() <= first.location().offset,
            "first fit: the rewrite lands below the record it replaces ({first:?}, {rewritten:?})"
        );
        assert_eq!(
            store.reclaim_space().unwrap(),
            0,
            "the old location is in use"
        );
        assert!(store.space()[0].file_bytes >= first.location().end());
        drop(store);
        (first, rewritten.location())
    };
    // The process ends (the page cache stays); then the rewrite's data rots.
    fs.cut(&mut Rng::new(3), Cut::Nothing);
    let device = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("dev0000.extents"))
        .unwrap();
    device.write_all_at(b"rot", rewritten.offset + 20).unwrap();
    drop(device);
    let store = Store::open(dir, config()).unwrap();
    assert_eq!(
        store.recovery().unwrap().unsynced_dropped,
        vec![ExtentId(1)]
    );
    assert_eq!(read(&store, 1), 1);
    assert_eq!(
        store.snapshot(ExtentId(1)).unwrap().location(),
        first.location()
    );
    drop(store);
    let store = Store::open(dir, config()).unwrap();
    assert_eq!(read(&store, 1), 1, "and at every open after it");
}

/// Once the marker is durable (here the idle store's flusher journals it),
/// the location is retired as any other: `reclaim_space` cuts it off.
#[test]
fn the_location_an_overlapped_write_replaced_is_freed_once_its_marker_is_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), config()).unwrap();
    let first = tail_record_over_a_hole(&store);
    let rewritten = store.write(ExtentId(1), &val(1, 2)).unwrap();
    assert!(rewritten.location().end() <= first.location().offset);
    common::wait_until(|| store.reclaim_space().unwrap() > 0);
    assert!(store.space()[0].file_bytes < first.location().end());
    assert_eq!(read(&store, 1), 2);
}

/// An inline write's record comes back when the overlapped write that
/// replaced it never became durable, from the journal that holds its bytes,
/// even where the device file never got them (the failed sync dropped the
/// pages): the fallback is not refused for bytes the reopen writes back.
#[test]
fn an_inline_record_an_overlapped_write_replaced_comes_back_from_the_journal() {
    let tmp = fault_fs::tempdir();
    let dir = tmp.path();
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let hook = Arc::new(DropNextDeviceSync::default());
    fs.set_hook(Arc::clone(&hook) as Arc<dyn Hook>);
    let config = StoreConfig::builder()
        .devices(1)
        .cache_bytes(0)
        .prefetch_workers(0)
        .inline_write_max(512)
        .metadata_reserve_bytes(16 << 10)
        .build()
        .unwrap();
    {
        let store = Store::open_in(Arc::new(fs.clone()), dir, config.clone()).unwrap();
        store
            .write(ExtentId(0), &value(ExtentId(0), 1, 100))
            .unwrap();
        hook.armed.store(true, Ordering::SeqCst);
        let err = store
            .write(ExtentId(0), &value(ExtentId(0), 2, 900))
            .unwrap_err();
        assert_eq!(err.code(), "FPRE028", "{err}");
        drop(store);
    }
    fs.cut(&mut Rng::new(7), Cut::Synced);
    for open in 0..2 {
        let store = Store::open(dir, config.clone()).unwrap();
        if open == 0 {
            let report = store.recovery().unwrap();
            assert_eq!(report.unsynced_dropped, vec![ExtentId(0)], "{report:?}");
        }
        assert_eq!(read(&store, 0), 1, "open {open}");
    }
}
