//! `FileBackend` on real temporary files, including damage underneath the store.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{decode, value};
use extentmeta::{Backend, Error, ExtentId, FileBackend, Location, Store, StoreConfig};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

fn uncached() -> StoreConfig {
    // No cache: every read goes to the file, so damage on disk is seen.
    StoreConfig::builder()
        .cache_bytes(0)
        .prefetch_workers(0)
        .build()
        .unwrap()
}

#[test]
fn write_read_round_trip_on_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(FileBackend::open(dir.path(), 3).unwrap(), uncached()).unwrap();
    for i in 0..30u64 {
        let id = ExtentId(i);
        store
            .write(id, &value(id, 1, 3000 + i as usize * 100))
            .unwrap();
    }
    for i in (0..30u64).step_by(2) {
        let id = ExtentId(i);
        store.write(id, &value(id, 2, 5000)).unwrap();
    }
    for i in 0..30u64 {
        let id = ExtentId(i);
        let expected = if i % 2 == 0 { 2 } else { 1 };
        assert_eq!(decode(&store.read(id).unwrap()), (id, expected));
    }
    for d in 0..3 {
        assert!(
            dir.path()
                .join(format!("dev{d:04}.extents"))
                .metadata()
                .unwrap()
                .len()
                > 0
        );
    }
}

#[test]
fn bytes_corrupted_in_the_file_fail_their_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FileBackend::open(dir.path(), 1).unwrap();
    let path = backend.device_path(0);
    let store = Store::new(backend, uncached()).unwrap();
    let id = ExtentId(7);
    let snap = store.write(id, &value(id, 1, 4096)).unwrap();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(b"\xff\xff", snap.location().offset + 100)
        .unwrap();
    // The read climbs the integrity ladder: every re-read fails (FPRE004), the
    // extent is quarantined, and with no replica and no cached copy it stays so.
    assert_eq!(
        store.read(id).unwrap_err(),
        Error::Quarantined { extent: id }
    );
    let stats = store.stats();
    assert_eq!(
        (stats.fpre004, stats.quarantines, stats.remap_failed),
        (1, 1, 1)
    );
    assert_eq!(stats.retries, 3, "the default retry limit");
    let kept = store.snapshot(id).unwrap();
    assert_eq!(kept.state(), extentmeta::State::Quarantined);
    assert_eq!(
        (kept.location(), kept.checksum()),
        (snap.location(), snap.checksum()),
        "record kept"
    );
}

#[test]
fn verify_reports_the_checksum_evidence_of_a_corrupted_file() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FileBackend::open(dir.path(), 1).unwrap();
    let path = backend.device_path(0);
    let store = Store::new(backend, uncached()).unwrap();
    let id = ExtentId(8);
    let snap = store.write(id, &value(id, 1, 4096)).unwrap();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(b"\x00\x01", snap.location().offset + 7)
        .unwrap();
    match store.verify(id).unwrap_err() {
        Error::RetryLimitExceeded {
            extent,
            location,
            attempts,
            last,
        } => {
            assert_eq!((extent, location, attempts), (id, snap.location(), 4));
            assert!(last.starts_with("FPRE003"), "{last}");
        }
        other => panic!("expected FPRE004, got {other}"),
    }
}

#[test]
fn truncated_file_gives_a_short_read() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FileBackend::open(dir.path(), 1).unwrap();
    let path = backend.device_path(0);
    let store = Store::new(backend, uncached()).unwrap();
    let id = ExtentId(1);
    let snap = store.write(id, &value(id, 1, 8192)).unwrap();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(snap.location().offset + 1000).unwrap();
    match store.verify(id).unwrap_err() {
        Error::RetryLimitExceeded { location, last, .. } => {
            assert_eq!(location, snap.location());
            assert!(last.starts_with("FPRE010 short read"), "{last}");
        }
        other => panic!("expected FPRE004, got {other}"),
    }
    assert_eq!(
        store.read(id).unwrap_err().code(),
        "FPRE013",
        "quarantined, record kept"
    );
}

#[test]
fn misdirected_bytes_of_another_extent_fail_the_identity_bound_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FileBackend::open(dir.path(), 1).unwrap();
    let path = backend.device_path(0);
    let store = Store::new(backend, uncached()).unwrap();
    let (a, b) = (ExtentId(1), ExtentId(2));
    let sa = store.write(a, &value(a, 1, 4096)).unwrap();
    let sb = store.write(b, &value(b, 1, 4096)).unwrap();
    // Copy b's bytes over a's location: right length, intact bytes, wrong identity.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut buf = vec![0; 4096];
    file.read_exact_at(&mut buf, sb.location().offset).unwrap();
    file.write_all_at(&buf, sa.location().offset).unwrap();
    assert_eq!(
        store.read(a).unwrap_err().code(),
        "FPRE013",
        "caught, quarantined"
    );
    assert_eq!(decode(&store.read(b).unwrap()), (b, 1));
}

#[test]
fn unusable_directory_and_unknown_device_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file_path = dir.path().join("not-a-dir");
    std::fs::write(&file_path, b"x").unwrap();
    assert_eq!(
        FileBackend::open(&file_path, 1).unwrap_err().code(),
        "FPRE009"
    );
    assert_eq!(
        FileBackend::open(dir.path(), 0).unwrap_err().code(),
        "FPRE008"
    );
    let backend = FileBackend::open(dir.path().join("ok"), 1).unwrap();
    let mut buf = [0u8; 4];
    let err = backend
        .read_at(Location::new(5, 0, 4), &mut buf)
        .unwrap_err();
    assert_eq!(err.code(), "FPRE009");
    let err = backend
        .read_at(Location::new(0, 0, 4), &mut buf)
        .unwrap_err();
    assert_eq!(
        err,
        Error::ShortRead {
            location: Location::new(0, 0, 4),
            actual: 0
        }
    );
}

#[test]
fn mem_backend_rejects_locations_beyond_memory_with_a_typed_error() {
    let mem = extentmeta::MemBackend::new(1);
    let far = Location::new(0, u64::MAX - 2, 16);
    let mut buf = [0u8; 16];
    assert_eq!(mem.read_at(far, &mut buf).unwrap_err().code(), "FPRE009");
    assert_eq!(mem.write_at(far, &buf).unwrap_err().code(), "FPRE009");
    assert_eq!(mem.corrupt(far, |_| {}).unwrap_err().code(), "FPRE009");
}

/// A `FileBackend` has its directory alone: a second one there, or a durable
/// store, is refused (FPRE026) while it is open, and open once it is dropped;
/// a durable store's directory is not a `FileBackend`'s (FPRE031), so no
/// empty allocator writes over the store's data.
#[test]
fn a_file_backend_holds_its_directory_and_refuses_a_durable_stores() {
    let dir = tempfile::tempdir().unwrap();
    let engine = dir.path().join("engine");
    let first = FileBackend::open(&engine, 1).unwrap();
    let err = FileBackend::open(&engine, 1).unwrap_err();
    assert_eq!(err.code(), "FPRE026", "{err}");
    let config = || StoreConfig::builder().devices(1).build().unwrap();
    let err = Store::open(&engine, config()).unwrap_err();
    assert_eq!(err.code(), "FPRE026", "{err}");
    let store = Store::new(first, StoreConfig::default()).unwrap();
    let id = ExtentId(1);
    store.write(id, &value(id, 1, 100)).unwrap();
    drop(store);
    drop(FileBackend::open(&engine, 1).unwrap());
    let durable = dir.path().join("durable");
    drop(Store::open(&durable, config()).unwrap());
    let err = FileBackend::open(&durable, 1).unwrap_err();
    assert_eq!(err.code(), "FPRE031", "{err}");
    drop(Store::open(&durable, config()).unwrap());
}
