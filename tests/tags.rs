//! Tags: the engine's key stored with each record. Durable with the record (in
//! the journal, inline or not, and in checkpoints), kept by relocation, dropped
//! by a delete and by an untagged rewrite, and always read with the record of
//! its own generation.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{tag, value};
use extentmeta::{CompactOutcome, ExtentId, MemBackend, State, Store, StoreConfig, Tag};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn config(journal_max_bytes: u64) -> StoreConfig {
    StoreConfig::builder()
        .devices(2)
        .cache_bytes(0)
        .prefetch_workers(0)
        .journal_max_bytes(journal_max_bytes)
        .build()
        .unwrap()
}

/// Small values travel inline in their journal record, the large ones (every
/// seventh) sync their data first: both carry the tag.
fn len_of(id: u64, generation: u64) -> usize {
    match (id + generation) % 7 {
        0 => 40_000 + id as usize,
        _ => 200 + ((id * 131 + generation * 17) % 3000) as usize,
    }
}

#[test]
fn tags_survive_reopens_by_replay_and_by_checkpoint_and_follow_their_generation() {
    // A large journal is replayed at open; a small one rotates often, so the
    // tags also come back from checkpoints.
    for journal_max_bytes in [64 << 20, 8 << 10] {
        let dir = tempfile::tempdir().unwrap();
        // Extent → the generation its value and tag encode; absent once deleted.
        let mut model: BTreeMap<u64, u64> = BTreeMap::new();
        {
            let store = Store::open(dir.path(), config(journal_max_bytes)).unwrap();
            for round in 1..=3u64 {
                for id in 0..40u64 {
                    // Extents divisible by 4 get a fourth, untagged generation.
                    let generations = if id % 4 == 0 { 4 } else { 3 };
                    if round > generations {
                        continue;
                    }
                    let (eid, len) = (ExtentId(id), len_of(id, round));
                    let bytes = value(eid, round, len);
                    store.write_tagged(eid, &bytes, tag(eid, round)).unwrap();
                    model.insert(id, round);
                }
            }
            for id in (0..40u64).filter(|id| id % 4 == 0) {
                let eid = ExtentId(id);
                store.write(eid, &value(eid, 4, len_of(id, 4))).unwrap();
                model.insert(id, 4);
            }
            for id in (0..40u64).filter(|id| id % 3 == 0) {
                let moved = store.compact(ExtentId(id)).unwrap();
                assert!(matches!(moved, CompactOutcome::Committed(_)), "{moved:?}");
            }
            for id in (0..40u64).filter(|id| id % 5 == 0) {
                store.delete(ExtentId(id)).unwrap();
                model.remove(&id);
            }
            check(&store, &model);
            store.close().unwrap();
        }
        let store = Store::open(dir.path(), config(journal_max_bytes)).unwrap();
        check(&store, &model);
        // Deleted extents read back vacant and untagged.
        let (deleted, t) = store.snapshot_tagged(ExtentId(5)).unwrap();
        assert_eq!((deleted.state(), t), (State::Vacant, Tag::EMPTY));
        // A new tagged generation replaces the old tag; it survives again.
        let eid = ExtentId(1);
        store
            .write_tagged(eid, &value(eid, 5, 300), tag(eid, 5))
            .unwrap();
        model.insert(1, 5);
        drop(store);
        check(
            &Store::open(dir.path(), config(journal_max_bytes)).unwrap(),
            &model,
        );
    }
}

/// Every live extent reads back its value with the tag written with it, and
/// the store holds exactly the tags of the tagged generations.
fn check(store: &Store, model: &BTreeMap<u64, u64>) {
    let found: BTreeMap<u64, Tag> = store
        .records_tagged()
        .map(|(s, t)| (s.extent().0, t))
        .collect();
    let want: BTreeMap<u64, Tag> = (model.iter())
        .map(|(&id, &g)| (id, tag(ExtentId(id), g)))
        .collect();
    assert_eq!(found, want);
    for (&id, &generation) in model {
        let bytes = store.read(ExtentId(id)).unwrap();
        assert_eq!(common::decode(&bytes), (ExtentId(id), generation));
    }
    let tagged = want.values().filter(|t| !t.is_empty()).count() as u64;
    assert_eq!(store.stats().tags_held, tagged);
}

/// A reader racing a writer never pairs a record with another generation's tag:
/// each generation `g` is written with the tag `g`, so the pair is consistent
/// exactly when the tag names the record's generation.
#[test]
fn a_tagged_snapshot_never_pairs_a_record_with_another_generations_tag() {
    let store = Arc::new(Store::new(MemBackend::new(1), StoreConfig::default()).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let ids = [ExtentId(1), ExtentId(2)];
    let writer = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        std::thread::spawn(move || {
            for generation in 1..=2_000u64 {
                for id in ids {
                    let t = Tag::new(&generation.to_le_bytes()).unwrap();
                    let s = store
                        .write_tagged(id, &value(id, generation, 64), t)
                        .unwrap();
                    assert_eq!(s.generation(), generation);
                }
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut pairs = 0u64;
    // Bounded: the writer ends; one pass after it ended reads a quiet store,
    // so pairs are seen however the threads were scheduled.
    loop {
        let finished = done.load(Ordering::Acquire);
        for id in ids {
            // Retryable: the writer committed through every lookup (it writes
            // without pause, and the scheduler may stall this reader), or it
            // was publishing through every read attempt (FPRE006: descheduled
            // mid-publish, which a loaded machine allows). Neither returns a
            // pair, so neither can pair a record with a wrong tag.
            let (s, t) = match store.snapshot_tagged(id) {
                Ok(pair) => pair,
                Err(err) if err.code() == "FPRE015" || err.code() == "FPRE006" => continue,
                Err(err) => panic!("{err}"),
            };
            if s.state() == State::Vacant {
                assert_eq!(t, Tag::EMPTY);
                continue;
            }
            assert_eq!(t.as_bytes(), s.generation().to_le_bytes(), "{s:?}");
            pairs += 1;
        }
        if finished {
            break;
        }
    }
    writer.join().unwrap();
    assert!(pairs > 0);
    // Only the last generation's tags are held.
    assert_eq!(store.stats().tags_held, ids.len() as u64);
}

#[test]
fn a_tag_longer_than_its_bound_is_refused() {
    let err = Tag::new(&[b'k'; extentmeta::MAX_TAG_LEN + 1]).unwrap_err();
    assert_eq!(err.code(), "FPRE033");
    assert!(!err.is_retryable());
}

/// Fails the journal's next sync, dropping its pages.
#[derive(Debug, Default)]
struct FailNextJournalSync {
    armed: AtomicBool,
}

impl common::fault_fs::Hook for FailNextJournalSync {
    fn before_sync(&self, file: &str) -> common::fault_fs::SyncVerdict {
        // SeqCst: the test thread arms it before the write that must meet it.
        match common::fault_fs::is_journal(file) && self.armed.swap(false, Ordering::SeqCst) {
            true => common::fault_fs::SyncVerdict::Fail { drop_pages: true },
            false => common::fault_fs::SyncVerdict::Normal,
        }
    }
}

/// A durable store in `dir` whose journal's next sync fails once `hook` is
/// armed.
fn failing_journal_store(dir: &std::path::Path) -> (Store, Arc<FailNextJournalSync>) {
    use common::fault_fs::{FaultFs, Faults, Hook};
    let fs = FaultFs::new(dir, u64::MAX, Faults::default());
    let hook = Arc::new(FailNextJournalSync::default());
    fs.set_hook(Arc::clone(&hook) as Arc<dyn Hook>);
    let store = Store::open_in(Arc::new(fs), dir, config(1 << 20)).unwrap();
    (store, hook)
}

/// A tagged write whose record reached the journal but did not commit
/// (outcome unknown) drops the tag it set at the generation it proposed:
/// tags stay bounded by the tagged records plus the writes in flight, and the
/// record keeps its own generation's tag.
#[test]
fn a_tagged_write_that_did_not_commit_leaves_no_tag_behind() {
    let tmp = common::fault_fs::tempdir();
    let (store, hook) = failing_journal_store(tmp.path());
    let id = ExtentId(3);
    store
        .write_tagged(id, &value(id, 1, 64), tag(id, 1))
        .unwrap();
    assert_eq!(store.stats().tags_held, 1);
    hook.armed.store(true, Ordering::SeqCst);
    // Generation 2 in the value, with a tag (odd generations carry one).
    let err = (store.write_tagged(id, &value(id, 2, 64), tag(id, 3))).unwrap_err();
    assert_eq!(err.code(), "FPRE028", "{err}");
    assert_eq!(
        store.stats().tags_held,
        1,
        "the proposed generation's tag went"
    );
    let (record, kept) = store.snapshot_tagged(id).unwrap();
    assert_eq!((record.generation(), kept), (1, tag(id, 1)));
}

/// The same for a batch: its tagged writes that did not commit drop the tags
/// they proposed.
#[test]
fn a_tagged_batch_that_did_not_commit_leaves_no_tag_behind() {
    let tmp = common::fault_fs::tempdir();
    let (store, hook) = failing_journal_store(tmp.path());
    let (a, b) = (ExtentId(3), ExtentId(5));
    let batch = |g: u64, t: u64| {
        let (va, vb) = (value(a, g, 64), value(b, g, 64));
        store.write_batch_tagged(&[(a, &va[..], tag(a, t)), (b, &vb[..], tag(b, t))])
    };
    batch(1, 1).unwrap();
    assert_eq!(store.stats().tags_held, 2);
    hook.armed.store(true, Ordering::SeqCst);
    // Generation 2 in the values, with tags (odd generations carry one).
    let err = batch(2, 3).unwrap_err();
    assert_eq!(err.code(), "FPRE028", "{err}");
    assert_eq!(
        store.stats().tags_held,
        2,
        "the proposed generations' tags went"
    );
    for id in [a, b] {
        assert_eq!(store.snapshot_tagged(id).unwrap().1, tag(id, 1));
    }
}
