//! What `Store::open` accepts: the open options (`create_if_missing`,
//! `error_if_exists`, `create_in_non_empty_dir`), paths that are not store
//! directories, and a configuration that no longer fits the directory. Every
//! refusal is typed, not retryable, and changes nothing on disk.

mod common;

use common::{decode, value};
use extentmeta::{Error, ExtentId, Store, StoreConfig};
use std::path::Path;

fn config() -> extentmeta::store::StoreConfigBuilder {
    StoreConfig::builder()
        .devices(2)
        .prefetch_workers(0)
        .metadata_reserve_bytes(0)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn refused(result: extentmeta::Result<Store>) -> Error {
    let err = result.expect_err("open must refuse");
    assert!(!err.is_retryable(), "{err} must not be retryable");
    err
}

#[test]
fn a_regular_file_is_not_a_store() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("data.bin");
    std::fs::write(&file, b"not a store").expect("write");
    let err = refused(Store::open(&file, config().build().expect("config")));
    assert_eq!(err.code(), "FPRE031", "{err}");
    assert_eq!(std::fs::read(&file).expect("read"), b"not a store");
}

#[test]
fn a_directory_of_other_files_is_refused_unless_asked() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(tmp.path().join("notes.txt"), b"mine").expect("write");
    let err = refused(Store::open(tmp.path(), config().build().expect("config")));
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains("notes.txt"), "{err}");
    assert_eq!(names(tmp.path()), ["notes.txt"], "nothing created");
    let store = Store::open(
        tmp.path(),
        config()
            .create_in_non_empty_dir(true)
            .build()
            .expect("config"),
    )
    .expect("asked to create beside other files");
    let id = ExtentId(3);
    store.write(id, b"extent=3 generation=1").expect("write");
    drop(store);
    // Once the store exists, its directory opens without the option.
    let store = Store::open(tmp.path(), config().build().expect("config")).expect("reopen");
    assert_eq!(&*store.read(id).expect("read"), b"extent=3 generation=1");
}

#[test]
fn create_if_missing_false_refuses_a_missing_store() {
    let tmp = tempfile::tempdir().expect("tmp");
    let missing = tmp.path().join("absent");
    let no_create = || config().create_if_missing(false).build().expect("config");
    let err = refused(Store::open(&missing, no_create()));
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    assert!(!missing.exists(), "the directory is not created");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    refused(Store::open(&empty, no_create()));
    assert!(
        names(&empty).is_empty(),
        "nothing created in an empty directory"
    );
    drop(Store::open(&empty, config().build().expect("config")).expect("create"));
    Store::open(&empty, no_create()).expect("an existing store opens");
}

#[test]
fn error_if_exists_refuses_an_existing_store() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("store");
    let exclusive = || config().error_if_exists(true).build().expect("config");
    let store = Store::open(&dir, exclusive()).expect("created afresh");
    let id = ExtentId(8);
    store.write(id, b"extent=8 generation=1").expect("write");
    drop(store);
    let before = names(&dir);
    let err = refused(Store::open(&dir, exclusive()));
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    assert_eq!(names(&dir), before, "nothing changed");
    let store = Store::open(&dir, config().build().expect("config")).expect("reopen");
    assert_eq!(&*store.read(id).expect("read"), b"extent=8 generation=1");
}

/// Reopening with a smaller device capacity than the records need names the
/// field, instead of calling the checkpoint corrupt; the original configuration
/// still opens it.
#[test]
fn a_smaller_capacity_names_the_field() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("store");
    let with_capacity = |bytes| {
        config()
            .device_capacity_bytes(bytes)
            .build()
            .expect("config")
    };
    let store = Store::open(&dir, with_capacity(1 << 30)).expect("create");
    for n in 0..40 {
        let id = ExtentId(n);
        store.write(id, &value(id, 1, 64 << 10)).expect("write");
    }
    drop(store);
    let err = refused(Store::open(&dir, with_capacity(64 << 10)));
    match &err {
        Error::InvalidConfig { field, .. } => assert_eq!(*field, "device_capacity_bytes"),
        other => panic!("expected InvalidConfig naming the field, got {other}"),
    }
    let store = Store::open(&dir, with_capacity(1 << 30)).expect("the original config opens");
    let id = ExtentId(39);
    assert_eq!(decode(&store.read(id).expect("read")), (id, 1));
}

/// Reopening with a table too small for the ids the store holds names
/// `max_extents` (it was FPRE005, out of range, as if a caller had asked for
/// that id); nothing on disk changes, and the original configuration still
/// opens it.
#[test]
fn a_smaller_table_names_the_field() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("store");
    let with_table = |max_extents| {
        let table = extentmeta::TableConfig::builder()
            .max_extents(max_extents)
            .build()
            .expect("table");
        config().table(table).build().expect("config")
    };
    let store = Store::open(&dir, with_table(1 << 20)).expect("create");
    let id = ExtentId(1000);
    store.write(id, &value(id, 1, 64)).expect("write");
    drop(store);
    let before = names(&dir);
    let err = refused(Store::open(&dir, with_table(16)));
    match &err {
        Error::InvalidConfig { field, .. } => assert_eq!(*field, "max_extents", "{err}"),
        other => panic!("expected InvalidConfig naming the field, got {other}"),
    }
    assert_eq!(names(&dir), before, "nothing changed");
    let store = Store::open(&dir, with_table(1 << 20)).expect("the original config opens");
    assert_eq!(decode(&store.read(id).expect("read")), (id, 1));
}

/// The block size is not kept on disk: reopening with a larger one than the
/// store was made with names the field (the records' offsets show it), instead
/// of calling the checkpoint corrupt or rounding spans over live bytes; the
/// original configuration still opens it, and nothing on disk changed.
#[test]
fn another_block_size_names_the_field() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("store");
    let with_block = |bytes| config().block_size_bytes(bytes).build().expect("config");
    let store = Store::open(&dir, with_block(4096)).expect("create");
    for n in 0..4 {
        let id = ExtentId(n);
        store.write(id, &value(id, 1, 4096)).expect("write");
    }
    drop(store);
    let before = names(&dir);
    let err = refused(Store::open(&dir, with_block(8192)));
    match &err {
        Error::InvalidConfig { field, .. } => assert_eq!(*field, "block_size_bytes", "{err}"),
        other => panic!("expected InvalidConfig naming the field, got {other}"),
    }
    assert_eq!(names(&dir), before);
    let store = Store::open(&dir, with_block(4096)).expect("the original config opens");
    for n in 0..4 {
        let id = ExtentId(n);
        assert_eq!(decode(&store.read(id).expect("read")), (id, 1));
    }
}

/// A store keeps its directory as it resolved at the open: a symbolic link
/// pointed elsewhere afterwards (and another store opened through it there)
/// never receives this store's later files. Each directory reopens with its
/// own store's writes, across rotations in both.
#[cfg(unix)]
#[test]
fn a_link_pointed_elsewhere_after_the_open_sends_no_files_to_the_other_directory() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let (v1, v2, link) = (
        tmp.path().join("v1"),
        tmp.path().join("v2"),
        tmp.path().join("db"),
    );
    let config = || {
        StoreConfig::builder()
            .journal_max_bytes(4096)
            .build()
            .unwrap_or_else(|e| panic!("config: {e}"))
    };
    let ok = |r: Result<(), std::io::Error>| r.unwrap_or_else(|e| panic!("{e}"));
    ok(std::fs::create_dir(&v1));
    ok(std::fs::create_dir(&v2));
    ok(std::os::unix::fs::symlink(&v1, &link));
    let a = Store::open(&link, config()).unwrap_or_else(|e| panic!("open a: {e}"));
    // The link now names v2 (replaced as an operator would, atomically).
    let next = tmp.path().join("db.next");
    ok(std::os::unix::fs::symlink(&v2, &next));
    ok(std::fs::rename(&next, &link));
    let b = Store::open(&link, config()).unwrap_or_else(|e| panic!("open b: {e}"));
    let put = |store: &Store, id: u64| {
        let e = ExtentId(id);
        (store.write(e, &value(e, 1, 700))).unwrap_or_else(|err| panic!("write {id}: {err}"));
    };
    // Many writes each: the 4 KiB journals rotate (new files, a checkpoint,
    // the pointer renamed) in both stores.
    for id in 0..40 {
        put(&a, id);
        put(&b, 100 + id);
    }
    assert!(a.stats().journal_number > 2 && b.stats().journal_number > 2);
    drop((a, b));
    for (dir, ids) in [(&v1, 0..40), (&v2, 100..140)] {
        let store = Store::open(dir, config()).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
        for id in ids {
            let e = ExtentId(id);
            let bytes = store
                .read(e)
                .unwrap_or_else(|err| panic!("{dir:?} {id}: {err}"));
            assert_eq!(decode(&bytes), (e, 1), "{dir:?}");
        }
    }
}
