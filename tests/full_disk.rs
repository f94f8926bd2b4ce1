//! A full disk, on real files: [`FaultFs`] with a byte budget
//! (`Faults::capacity_bytes`) wraps the real file system and refuses to let the
//! store's files grow past it (ENOSPC, after writing what fits: a short write), as
//! a small file system would.
//!
//! What must hold (issue case 6, invariants 9, 12 and 14): writes fail with the
//! typed, retryable FPRE029 and are not visible; reads keep working; deletes,
//! compaction commits, checkpoints and `close` still succeed (the metadata reserve
//! is released for them); after deletes and `reclaim_space` writes succeed again
//! without a reopen; a reopen finds exactly the acknowledged state.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
#![cfg(unix)]

mod common;

use common::fault_fs::{Cut, FaultFs, Faults, Rng, Target, WriteFault};
use common::{decode, value, wait_until};
use extentmeta::fs::Fs;
use extentmeta::{ExtentId, Store, StoreConfig};
use std::collections::HashMap;
use std::sync::Arc;

/// A file system of `capacity` bytes over the real files of `dir`.
fn full_fs(dir: &std::path::Path, capacity: u64) -> FaultFs {
    FaultFs::new(dir, u64::MAX, with_capacity(capacity))
}

fn with_capacity(capacity: u64) -> Faults {
    Faults {
        capacity_bytes: Some(capacity),
        ..Faults::default()
    }
}

const EXTENT_BYTES: usize = 8 << 10;

/// The store of these tests (with the default inline writes: extents of
/// `EXTENT_BYTES` travel in their journal record).
fn config() -> StoreConfig {
    builder().build().unwrap()
}

fn builder() -> extentmeta::store::StoreConfigBuilder {
    StoreConfig::builder()
        .devices(1)
        .cache_bytes(0)
        .prefetch_workers(0)
        .journal_max_bytes(4 << 10)
        .metadata_reserve_bytes(64 << 10)
}

fn put(store: &Store, id: u64, generation: u64) -> extentmeta::Result<()> {
    store
        .write(ExtentId(id), &value(ExtentId(id), generation, EXTENT_BYTES))
        .map(|_| ())
}

fn read(store: &Store, id: u64) -> Option<u64> {
    match store.read(ExtentId(id)) {
        Ok(bytes) => {
            let (got, generation) = decode(&bytes);
            assert_eq!(got, ExtentId(id));
            Some(generation)
        }
        Err(e) if e.code() == "FPRE012" => None,
        Err(e) => panic!("extent {id}: {e}"),
    }
}

/// Fills the disk, then frees space, then writes again, without a reopen; then
/// reopens and checks the acknowledged state exactly.
#[test]
fn a_full_disk_refuses_writes_keeps_deletes_and_resumes_after_reclamation() {
    // Writes that sync their data; then inline writes, whose data also takes
    // journal space until a checkpoint replaces the journal: they need more room
    // freed before they fit again (every other extent deleted, or three in four).
    full_disk_then_reclamation(builder().inline_write_max(0).build().unwrap(), 2);
    full_disk_then_reclamation(config(), 4);
}

/// Fills the disk, deletes every extent but one in `keep_one_in`, then writes
/// again.
fn full_disk_then_reclamation(config: StoreConfig, keep_one_in: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fs = full_fs(dir, 1 << 20);
    let store = Store::open_in(Arc::new(fs.clone()), dir, config.clone()).unwrap();
    // Extent → the generation acknowledged (None: deleted).
    let mut model: HashMap<u64, Option<u64>> = HashMap::new();
    let mut full = None;
    for id in 0..1_000 {
        // A rotation's checkpoint runs in the background and frees journal
        // space when it ends: let it end, so that the disk is full when the
        // loop stops and stays full.
        wait_until(|| !store.stats().checkpoint_pending);
        match put(&store, id, 1) {
            Ok(()) => {
                model.insert(id, Some(1));
            }
            Err(e) => {
                full = Some((id, e));
                break;
            }
        }
    }
    let (first_refused, err) = full.expect("a 1 MiB disk fills up");
    assert_eq!(err.code(), "FPRE029", "{err}");
    assert!(err.is_retryable());
    assert!(first_refused > 20, "wrote {first_refused} extents first");
    // A failed write is not visible, and reads keep working.
    assert_eq!(read(&store, first_refused), None);
    for (&id, &generation) in &model {
        assert_eq!(read(&store, id), generation, "extent {id} on a full disk");
    }
    // Later writes are refused too, typed, while the disk is full.
    let again = put(&store, first_refused, 1).unwrap_err();
    assert_eq!(again.code(), "FPRE029", "{again}");
    // Deletes still commit (their records use the released reserve), enough of
    // them to cross a journal rotation (a checkpoint) on the full disk.
    let rotations = store.stats().journal_number;
    let deleted = (0..first_refused).filter(|id| id % keep_one_in != keep_one_in - 1);
    for id in deleted.clone() {
        // One operation at a time against the checkpointer too: on a disk
        // this full, a delete appending beside a running checkpoint can take
        // the last bytes the checkpoint needs (it then fails, the journals
        // stay, and space comes back only with a later rotation).
        wait_until(|| !store.stats().checkpoint_pending);
        let deleted = store.delete(ExtentId(id)).unwrap();
        assert_eq!(deleted.state(), extentmeta::State::Vacant);
        model.insert(id, None);
    }
    // A compaction commits too: its copy goes into space the deletes freed.
    wait_until(|| !store.stats().checkpoint_pending);
    store.compact(ExtentId(keep_one_in - 1)).unwrap();
    assert!(
        store.stats().journal_number > rotations,
        "the deletes crossed a rotation on the full disk"
    );
    // The rotation's checkpoint, in the background, removes the journals it
    // replaces: their space is what the reserve is made again from.
    wait_until(|| !store.stats().checkpoint_pending);
    assert!(store.reclaim_space().unwrap() > 0 || fs.used_bytes() < 1 << 20);
    // Writes succeed again, without a reopen: into the freed space, and the
    // reserve was made again first.
    for id in deleted.take(5) {
        wait_until(|| !store.stats().checkpoint_pending);
        put(&store, id, 2).unwrap();
        model.insert(id, Some(2));
    }
    for (&id, &generation) in &model {
        assert_eq!(
            read(&store, id),
            generation,
            "extent {id} after reclamation"
        );
    }
    store.close().unwrap();
    drop(store);
    let store = Store::open_in(Arc::new(fs), dir, config).unwrap();
    assert!(store.recovery().unwrap().clean_close);
    for (&id, &generation) in &model {
        assert_eq!(read(&store, id), generation, "extent {id} after the reopen");
    }
}

/// A store in `dir` on a roomy fault file system, extents 0..10 written at
/// generation 1, closed; the file system.
fn ten_extents_closed(dir: &std::path::Path) -> FaultFs {
    let fs = full_fs(dir, 1 << 30);
    let store = Store::open_in(Arc::new(fs.clone()), dir, config()).unwrap();
    for id in 0..10 {
        put(&store, id, 1).unwrap();
    }
    store.close().unwrap();
    fs
}

/// With the disk full before the open, the store opens (no reserve could be made)
/// and refuses writes, typed; reads of what is there work.
#[test]
fn a_store_opened_on_a_full_disk_refuses_writes_and_serves_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fs = ten_extents_closed(dir);
    // The disk is now exactly full: not even the reserve fits again.
    if fs.live("RESERVE").is_some() {
        fs.remove(&dir.join("RESERVE")).unwrap();
    }
    fs.set_faults(with_capacity(fs.used_bytes()));
    let store = Store::open_in(Arc::new(fs.clone()), dir, config()).unwrap();
    for id in 0..10 {
        assert_eq!(read(&store, id), Some(1));
    }
    let err = put(&store, 10, 1).unwrap_err();
    assert_eq!(err.code(), "FPRE029", "{err}");
    // With no reserve to release, a delete's record does not fit: it fails typed
    // (its outcome unknown: the journal failed with its record) and is not
    // visible; nothing panics.
    // (A recycled journal has its space already: there the delete's record
    // fits, and it succeeds.)
    let deleted = store.delete(ExtentId(3));
    let visible = if deleted.is_ok() { None } else { Some(1) };
    assert_eq!(read(&store, 3), visible, "{deleted:?}");
    drop(store);
    fs.set_faults(with_capacity(1 << 30));
    let store = Store::open_in(Arc::new(fs), dir, config()).unwrap();
    for id in (0..10).filter(|&id| id != 3) {
        assert_eq!(read(&store, id), Some(1), "extent {id} after the reopen");
    }
    match deleted {
        Ok(_) => assert_eq!(read(&store, 3), None),
        Err(e) if e.code() == "FPRE028" => {}
        Err(e) => {
            assert!(["FPRE029", "FPRE009", "FPRE036"].contains(&e.code()), "{e}");
            assert_eq!(read(&store, 3), Some(1), "{e}: certainly not deleted");
        }
    }
    put(&store, 10, 1).unwrap();
}

/// A reopen whose plan needs space finds the disk full: the journal's torn
/// tail must be kept in an evidence file before the journal is cut back. The
/// open releases the metadata reserve for it, as a running store does for a
/// commit (without it the open fails with FPRE029 until space is freed outside
/// the store); every acknowledged value reads back, and writes work again.
#[test]
fn a_reopen_on_a_full_disk_releases_the_reserve_for_its_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fs = ten_extents_closed(dir);
    assert!(fs.live("RESERVE").is_some(), "the reserve was made");
    // A torn tail after the journal's last frame: bytes no frame check
    // accepts.
    let journal = (fs.list(dir).unwrap().into_iter())
        .filter(|n| n.starts_with("journal-") && n != "journal-recycled")
        .max()
        .unwrap();
    let bytes = fs.live(&journal).unwrap();
    let end = common::frames_end(&bytes);
    assert!(end > 32 && end < bytes.len(), "frames, then their end");
    let file = fs.open(&dir.join(&journal), false).unwrap();
    file.write_all_at(&[0xA5; 64], end as u64).unwrap();
    file.sync_data().unwrap();
    drop(file);
    // Exactly full: the evidence file does not fit without the reserve.
    fs.set_faults(with_capacity(fs.used_bytes()));
    let store = Store::open_in(Arc::new(fs.clone()), dir, config()).unwrap();
    let report = store.recovery().unwrap();
    assert!(report.torn_tail_dropped, "{report:?}");
    for id in 0..10 {
        assert_eq!(read(&store, id), Some(1), "extent {id}");
    }
    drop(store);
    fs.set_faults(with_capacity(1 << 30));
    let store = Store::open_in(Arc::new(fs), dir, config()).unwrap();
    put(&store, 10, 1).unwrap();
    for id in 0..=10 {
        assert_eq!(
            read(&store, id),
            Some(1),
            "extent {id} after space returned"
        );
    }
}

/// A power cut loses the unsynced copies that inline writes left at their
/// locations; the reopen must write them back from the journal (the redo),
/// and the disk is full. The open releases the metadata reserve for those
/// device writes too: a store that could not open could not delete anything to
/// make room. Every acknowledged value reads back, and writes work again once
/// there is space.
#[test]
fn a_reopen_that_writes_inline_data_back_on_a_full_disk_releases_the_reserve() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A journal that does not rotate: no checkpoint syncs the locations.
    let config = || builder().journal_max_bytes(1 << 20).build().unwrap();
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let store = Store::open_in(Arc::new(fs.clone()), dir, config()).unwrap();
    for id in 0..5 {
        put(&store, id, id + 1).unwrap();
    }
    assert_eq!(store.stats().checkpoints, 0);
    // The power fails now: the store's later operations (its close) fail, and
    // only synced bytes survive.
    fs.restart(fs.ops());
    drop(store);
    fs.cut(&mut Rng::new(1), Cut::Synced);
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    // Exactly full: the locations' bytes do not fit without the reserve.
    fs.set_faults(with_capacity(fs.used_bytes()));
    let store = Store::open_in(Arc::new(fs.clone()), dir, config()).unwrap();
    let report = store.recovery().unwrap();
    assert_eq!(report.inline_written_back, 5, "{report:?}");
    assert!(fs.live("RESERVE").is_none(), "the reserve was released");
    for id in 0..5 {
        assert_eq!(read(&store, id), Some(id + 1), "extent {id}");
    }
    let refused = put(&store, 5, 1).unwrap_err();
    assert_eq!(refused.code(), "FPRE029", "{refused}");
    drop(store);
    fs.set_faults(with_capacity(1 << 30));
    let store = Store::open_in(Arc::new(fs), dir, config()).unwrap();
    put(&store, 5, 1).unwrap();
    for id in 0..5 {
        assert_eq!(
            read(&store, id),
            Some(id + 1),
            "extent {id} after space returned"
        );
    }
}

/// A rotation's checkpoint that meets a full disk releases the metadata
/// reserve on the checkpointer's thread. The next write must see that at once
/// and make the reserve again before it writes (or be refused while the disk
/// stays full), not learn it only at its own commit and meanwhile take the
/// room the reserve left for metadata.
#[test]
fn a_write_after_a_checkpoint_released_the_reserve_makes_it_again_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fs = full_fs(dir, 1 << 30);
    let store = Store::open_in(Arc::new(fs.clone()), dir, config()).unwrap();
    assert!(fs.live("RESERVE").is_some(), "the open makes the reserve");
    // The next checkpoint's first write meets a full disk, once.
    fs.set_faults(Faults {
        enospc: Some(WriteFault {
            target: Target::Checkpoint,
            nth: 1,
            short: false,
        }),
        ..Faults::default()
    });
    // Each inline write outgrows the 4 KiB journal: a rotation after each.
    let mut id = 0;
    while fs.fired().is_none() {
        assert!(id < 100, "no checkpoint met the full disk");
        put(&store, id, 1).unwrap();
        wait_until(|| !store.stats().checkpoint_pending);
        id += 1;
    }
    wait_until(|| !store.stats().checkpoint_pending);
    assert!(
        fs.live("RESERVE").is_none(),
        "the checkpoint released the reserve to finish"
    );
    put(&store, id, 1).unwrap();
    assert!(
        fs.live("RESERVE").is_some(),
        "the write made the reserve again before writing"
    );
    for written in 0..=id {
        assert_eq!(read(&store, written), Some(1), "extent {written}");
    }
    store.close().unwrap();
}
