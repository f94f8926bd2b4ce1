//! Batch writes: every write of the batch commits with one sync per device and one
//! journal sync; a failure before the commits changes nothing.

mod common;

use common::fault_backend::{FaultBackend, Inject, Op};
use common::{decode, value};
use extentmeta::{ExtentId, MemBackend, Store, StoreConfig};
use std::sync::Arc;

fn items(ids: &[u64], generation: u64) -> Vec<(ExtentId, Vec<u8>)> {
    ids.iter()
        .map(|&i| (ExtentId(i), value(ExtentId(i), generation, 64 + i as usize)))
        .collect()
}

fn as_refs(items: &[(ExtentId, Vec<u8>)]) -> Vec<(ExtentId, &[u8])> {
    items.iter().map(|(id, v)| (*id, v.as_slice())).collect()
}

#[test]
fn batch_commits_every_write_and_shares_one_journal_sync() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::builder().devices(3).build().unwrap();
    let ids: Vec<u64> = (0..20).collect();
    {
        let store = Store::open(dir.path(), config.clone()).unwrap();
        let first = items(&ids, 1);
        store.write_batch(&as_refs(&first)).unwrap();
        let before = store.stats().journal_syncs;
        let second = items(&ids[..10], 2);
        let committed = store.write_batch(&as_refs(&second)).unwrap();
        assert_eq!(
            store.stats().journal_syncs - before,
            1,
            "ten writes, one journal sync"
        );
        for (snap, (id, _)) in committed.iter().zip(&second) {
            assert_eq!((snap.extent(), snap.generation()), (*id, 2));
        }
    }
    let store = Store::open(dir.path(), config).unwrap();
    for &i in &ids {
        let want = if i < 10 { 2 } else { 1 };
        assert_eq!(
            decode(&store.read(ExtentId(i)).unwrap()),
            (ExtentId(i), want)
        );
    }
}

#[test]
fn a_duplicate_id_fails_the_batch_and_changes_nothing() {
    let store = Store::new(MemBackend::new(2), StoreConfig::default()).unwrap();
    let first = items(&[1, 2], 1);
    store.write_batch(&as_refs(&first)).unwrap();
    let mut dup = items(&[1, 2], 2);
    dup.push((ExtentId(1), value(ExtentId(1), 3, 80)));
    let err = store.write_batch(&as_refs(&dup)).unwrap_err();
    assert_eq!(err.code(), "FPRE030", "a duplicate is its own error: {err}");
    assert!(!err.is_retryable(), "the same batch fails the same way");
    for i in [1, 2] {
        assert_eq!(decode(&store.read(ExtentId(i)).unwrap()), (ExtentId(i), 1));
        assert!(!store.snapshot(ExtentId(i)).unwrap().write_pending());
    }
    // Nothing stayed pending: the same batch without the duplicate commits.
    dup.pop();
    store.write_batch(&as_refs(&dup)).unwrap();
    assert_eq!(decode(&store.read(ExtentId(2)).unwrap()), (ExtentId(2), 2));
}

#[test]
fn a_failed_data_write_aborts_the_whole_batch_and_a_batch_syncs_each_device_once() {
    let backend = FaultBackend::new(2);
    let store = Store::new(Arc::clone(&backend), StoreConfig::default()).unwrap();
    let ids: Vec<u64> = (10..18).collect();
    store.write_batch(&as_refs(&items(&ids, 1))).unwrap();
    assert_eq!(
        backend.calls(Op::Sync),
        2,
        "eight writes over two devices: two syncs"
    );
    // The fourth data write of the next batch fails.
    backend.inject_nth(Op::Write, 4, Inject::Fail);
    let err = store.write_batch(&as_refs(&items(&ids, 2))).unwrap_err();
    assert_eq!(err.code(), "FPRE009");
    for &i in &ids {
        assert_eq!(decode(&store.read(ExtentId(i)).unwrap()), (ExtentId(i), 1));
        assert!(!store.snapshot(ExtentId(i)).unwrap().write_pending());
    }
    backend.disarm();
    store.write_batch(&as_refs(&items(&ids, 2))).unwrap();
    for &i in &ids {
        assert_eq!(decode(&store.read(ExtentId(i)).unwrap()), (ExtentId(i), 2));
    }
}

#[test]
fn an_empty_batch_is_a_no_op() {
    let store = Store::new(MemBackend::new(1), StoreConfig::default()).unwrap();
    assert!(store.write_batch(&[]).unwrap().is_empty());
}
