//! `FileBackend` on real temporary files, including damage underneath the store.
#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

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
    match store.read(id).unwrap_err() {
        Error::ChecksumMismatch {
            extent,
            generation,
            location,
            expected,
            actual,
        } => {
            assert_eq!((extent, generation, location), (id, 1, snap.location()));
            assert_eq!(expected, snap.checksum());
            assert_ne!(actual, expected);
        }
        other => panic!("expected FPRE003, got {other}"),
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
    let err = store.read(id).unwrap_err();
    assert_eq!(
        err,
        Error::ShortRead {
            location: snap.location(),
            actual: 1000
        }
    );
    assert!(err.is_retryable());
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
    assert_eq!(store.read(a).unwrap_err().code(), "FPRE003");
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
