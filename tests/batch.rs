//! Batch writes: every write of the batch commits with one sync per device and one
//! journal sync; a failure before the commits changes nothing. Batches of writes
//! and deletes (`Store::apply_batch`) share the journal sync, survive a reopen
//! together, and a delete that cannot happen fails the whole batch.

mod common;

use common::fault_backend::{FaultBackend, Inject, Op};
use common::{decode, value};
use extentmeta::events::Event;
use extentmeta::{Batch, ExtentId, MemBackend, Store, StoreConfig};
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

#[test]
fn writes_and_deletes_commit_together_with_one_journal_sync_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::builder().devices(2).build().unwrap();
    let ids: Vec<u64> = (0..8).collect();
    {
        let store = Store::open(dir.path(), config.clone()).unwrap();
        store.write_batch(&as_refs(&items(&ids, 1))).unwrap();
        let from = store.change_seq();
        let before = store.stats().journal_syncs;
        let mut batch = Batch::new();
        for &i in &ids {
            let id = ExtentId(i);
            match i % 2 {
                0 => batch.write(id, value(id, 2, 64 + i as usize)),
                _ => batch.delete(id),
            };
        }
        let committed = store.apply_batch(batch).unwrap();
        assert_eq!(store.stats().journal_syncs - before, 1, "one journal sync");
        for (snap, &i) in committed.iter().zip(&ids) {
            assert_eq!(snap.extent(), ExtentId(i));
            assert_eq!(
                snap.generation(),
                1 + (i + 1) % 2,
                "a delete keeps its generation"
            );
            assert_eq!(snap.is_readable(), i % 2 == 0);
        }
        let changes = store.changes_since(from).unwrap();
        let deleted = (changes.iter())
            .filter(|e| matches!(e, Event::Deleted { .. }))
            .count();
        assert_eq!((changes.len(), deleted), (8, 4));
        assert_eq!(store.stats().write_ok, 8 + 4, "deletes are not writes");
    }
    let store = Store::open(dir.path(), config).unwrap();
    for &i in &ids {
        let id = ExtentId(i);
        match i % 2 {
            0 => assert_eq!(decode(&store.read(id).unwrap()), (id, 2)),
            _ => assert_eq!(store.read(id).unwrap_err().code(), "FPRE012"),
        }
    }
}

#[test]
fn a_delete_that_cannot_happen_fails_the_batch_and_changes_nothing() {
    let store = Store::new(MemBackend::new(2), StoreConfig::default()).unwrap();
    store.write_batch(&as_refs(&items(&[1, 2], 1))).unwrap();
    let live = |s: &Store| s.space().iter().map(|d| d.live_bytes).sum::<u64>();
    let (space, seq) = (live(&store), store.change_seq());
    let mut batch = Batch::new();
    batch
        .write(ExtentId(1), value(ExtentId(1), 2, 64))
        .delete(ExtentId(2))
        .delete(ExtentId(3));
    let err = store.apply_batch(batch).unwrap_err();
    assert_eq!(err.code(), "FPRE012", "extent 3 was never written: {err}");
    assert_eq!(decode(&store.read(ExtentId(1)).unwrap()), (ExtentId(1), 1));
    assert_eq!(decode(&store.read(ExtentId(2)).unwrap()), (ExtentId(2), 1));
    assert_eq!(live(&store), space, "the write's fresh location was freed");
    assert_eq!(store.change_seq(), seq, "no change was made");
    // Nothing is left pending: both extents take a new batch.
    let mut batch = Batch::new();
    batch
        .delete(ExtentId(1))
        .write(ExtentId(2), value(ExtentId(2), 2, 64));
    store.apply_batch(batch).unwrap();
    assert_eq!(decode(&store.read(ExtentId(2)).unwrap()), (ExtentId(2), 2));
    let mut twice = Batch::new();
    twice
        .write(ExtentId(2), value(ExtentId(2), 3, 64))
        .delete(ExtentId(2));
    assert_eq!(store.apply_batch(twice).unwrap_err().code(), "FPRE030");
    let only_deletes = {
        let mut b = Batch::new();
        b.delete(ExtentId(2));
        b
    };
    assert_eq!(store.apply_batch(only_deletes).unwrap().len(), 1);
    assert!(store.apply_batch(Batch::new()).unwrap().is_empty());
}
