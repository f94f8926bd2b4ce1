//! The change stream: a follower that applies `changes_since` by version while
//! writes, deletes and compactions race converges to the store's records (tags
//! included); one that fell behind or outlived a reopen reads a typed
//! truncation and converges again from `change_baseline`; a hold keeps a slow
//! consumer's changes; numbers only grow across reopens.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{tag, value};
use extentmeta::events::Event;
use extentmeta::record::State;
use extentmeta::{Error, ExtentId, MemBackend, Snapshot, Store, StoreConfig, Tag};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a follower holds per extent: the record and its tag.
type Held = BTreeMap<ExtentId, (Snapshot, Tag)>;

/// A follower of a store's change stream, applying by version.
#[derive(Default)]
struct Follower {
    held: Held,
    next: u64,
    resyncs: u64,
    applied: u64,
}

impl Follower {
    fn apply(&mut self, record: Snapshot, tag: Tag) {
        let newer = self
            .held
            .get(&record.extent())
            .is_none_or(|(held, _)| record.version() > held.version());
        if newer {
            // A deleted extent keeps its version with no tag.
            let tag = if record.state() == State::Vacant {
                Tag::EMPTY
            } else {
                tag
            };
            self.held.insert(record.extent(), (record, tag));
        }
    }

    fn resync(&mut self, store: &Store) {
        let (from, records) = store.change_baseline();
        self.held.clear();
        for (record, tag) in records {
            self.apply(record, tag);
        }
        self.next = from;
        self.resyncs += 1;
    }

    /// Reads and applies what the stream holds; resyncs if it cannot.
    fn catch_up(&mut self, store: &Store) {
        match store.changes_since(self.next) {
            Ok(changes) => {
                for change in changes {
                    let seq = change.seq().expect("a record change");
                    assert_eq!(seq, self.next, "numbers run without gaps");
                    self.next = seq + 1;
                    self.applied += 1;
                    self.apply(change.record().unwrap(), change.tag().unwrap());
                }
            }
            Err(Error::ChangesTruncated { requested, oldest }) => {
                assert!(oldest > requested);
                self.resync(store);
            }
            Err(err) => panic!("unexpected {err}"),
        }
    }

    /// The live records the follower holds.
    fn live(&self) -> Held {
        (self.held.iter())
            .filter(|(_, (record, _))| record.state() != State::Vacant)
            .map(|(id, held)| (*id, *held))
            .collect()
    }
}

/// The store's live records with their tags.
fn live(store: &Store) -> Held {
    (store.records_tagged())
        .map(|(record, tag)| (record.extent(), (record, tag)))
        .collect()
}

/// Three threads write (tagged), delete and compact eight extents while the
/// follower reads along.
fn race(store: &Store, follower: &mut Follower, rounds: u64) {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..3u64)
            .map(|t| {
                s.spawn(move || {
                    for round in 0..rounds {
                        let id = ExtentId((round * 3 + t) % 8);
                        let generation = store.snapshot(id).unwrap().generation() + 1;
                        let bytes = value(id, generation, 64);
                        // Races with the other threads are expected and typed.
                        let _ = match round % 5 {
                            3 => store.delete(id).map(|_| ()),
                            4 => store.compact(id).map(|_| ()),
                            _ => store
                                .write_tagged(id, &bytes, tag(id, generation))
                                .map(|_| ()),
                        };
                    }
                })
            })
            .collect();
        s.spawn(|| {
            for w in workers {
                w.join().unwrap();
            }
            done.store(true, Ordering::Release);
        });
        while !done.load(Ordering::Acquire) {
            follower.catch_up(store);
            std::thread::yield_now();
        }
    });
    follower.catch_up(store);
}

#[test]
fn a_follower_that_applies_by_version_converges_while_changes_race() {
    let config = StoreConfig::builder()
        .change_retention(1 << 16)
        .build()
        .unwrap();
    let store = Store::new(MemBackend::new(2), config).unwrap();
    let mut follower = Follower::default();
    race(&store, &mut follower, 400);
    assert_eq!(follower.resyncs, 0, "retention covered the run");
    assert_eq!(follower.applied, store.change_seq());
    assert!(!live(&store).is_empty());
    assert_eq!(follower.live(), live(&store));
}

#[test]
fn a_follower_that_falls_behind_reads_a_truncation_and_converges_from_the_baseline() {
    let config = StoreConfig::builder().change_retention(4).build().unwrap();
    let store = Store::new(MemBackend::new(2), config).unwrap();
    let mut follower = Follower::default();
    for i in 0..10u64 {
        let id = ExtentId(i);
        store
            .write_tagged(id, &value(id, 1, 64), tag(id, 1))
            .unwrap();
    }
    follower.catch_up(&store);
    assert_eq!(follower.resyncs, 1, "changes 0..6 went");
    assert_eq!(follower.live(), live(&store));
    race(&store, &mut follower, 300);
    assert_eq!(follower.live(), live(&store));
}

#[test]
fn a_hold_keeps_a_slow_consumers_changes_and_its_release_lets_them_go() {
    let config = StoreConfig::builder().change_retention(2).build().unwrap();
    let store = Store::new(MemBackend::new(1), config).unwrap();
    let from = store.change_seq();
    let hold = store.hold_changes(from);
    for g in 1..=20u64 {
        store
            .write(ExtentId(1), &value(ExtentId(1), g, 64))
            .unwrap();
    }
    let changes = store.changes_since(from).unwrap();
    let generations: Vec<u64> = changes
        .iter()
        .map(|c| c.record().unwrap().generation())
        .collect();
    assert_eq!(generations, (1..=20).collect::<Vec<_>>());
    hold.advance(from + 10);
    assert_eq!(store.changes_since(from + 10).unwrap().len(), 10);
    drop(hold);
    match store.changes_since(from + 10) {
        Err(Error::ChangesTruncated { requested, oldest }) => {
            assert_eq!((requested, oldest), (from + 10, from + 18));
        }
        other => panic!("expected a truncation, got {other:?}"),
    }
    assert_eq!(
        store.changes_since(from + 21).unwrap_err().code(),
        "FPRE035",
        "a cursor past the stream is refused, not waited on"
    );
}

#[test]
fn a_reopened_store_numbers_past_its_earlier_run_and_a_follower_resyncs() {
    let tmp = tempfile::tempdir().unwrap();
    let config = || {
        StoreConfig::builder()
            .prefetch_workers(0)
            .journal_max_bytes(16 << 10)
            .build()
            .unwrap()
    };
    let mut follower = Follower::default();
    let mut last = 0;
    for run in 0..3u64 {
        let store = Store::open(tmp.path(), config()).unwrap();
        assert!(
            store.change_seq() >= last,
            "run {run} starts at {} below {last}",
            store.change_seq()
        );
        let before = follower.resyncs;
        follower.catch_up(&store);
        if run > 0 {
            assert_eq!(follower.resyncs, before + 1, "a reopen starts a new stream");
        }
        let resyncs = follower.resyncs;
        race(&store, &mut follower, 120);
        assert_eq!(
            follower.resyncs, resyncs,
            "the default retention covers a run"
        );
        assert_eq!(follower.live(), live(&store), "run {run}");
        last = store.change_seq();
        // The second run ends without `close`: dropped, as a process that dies.
        if run != 1 {
            store.close().unwrap();
        }
    }
}

#[test]
fn every_record_change_is_numbered_and_a_listener_sees_the_same_numbers() {
    let store = Store::new(MemBackend::new(2), StoreConfig::default()).unwrap();
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&heard);
    store.add_listener(move |e: &Event| sink.lock().unwrap().push(e.clone()));
    let id = ExtentId(3);
    store
        .write_tagged(id, &value(id, 1, 64), tag(id, 1))
        .unwrap();
    store.compact(id).unwrap();
    store
        .write_batch(&[(ExtentId(4), &value(ExtentId(4), 1, 64)[..])])
        .unwrap();
    store.delete(id).unwrap();
    let stream = store.changes_since(0).unwrap();
    assert_eq!(*heard.lock().unwrap(), stream);
    let kinds: Vec<_> = stream
        .iter()
        .map(|e| match e {
            Event::Written { record, tag, .. } => ("written", record.extent(), *tag),
            Event::Relocated { record, tag, .. } => ("relocated", record.extent(), *tag),
            Event::Deleted { record, tag, .. } => ("deleted", record.extent(), *tag),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("written", id, tag(id, 1)),
            ("relocated", id, tag(id, 1)),
            ("written", ExtentId(4), Tag::EMPTY),
            ("deleted", id, tag(id, 1)),
        ]
    );
    let seqs: Vec<_> = stream.iter().filter_map(Event::seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
}

#[test]
fn retention_bounds_are_checked_by_name() {
    let err = StoreConfig::builder()
        .change_retention(1 << 27)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "change_retention",
                ..
            }
        ),
        "{err}"
    );
}

/// An in-memory store restarted from the engine's records numbers its changes
/// from 0 again, so the follower's cursor reads the new run's changes as if
/// they were the ones after it; the stream's identity tells the two runs
/// apart. A durable store's identity changes at every open too.
#[test]
fn the_stream_identity_tells_a_restart_that_the_cursor_cannot() {
    let backend = std::sync::Arc::new(MemBackend::new(1));
    let store = Store::new(std::sync::Arc::clone(&backend), StoreConfig::default()).unwrap();
    let first = store.change_stream_id();
    assert_eq!(store.change_stream_id(), first, "one identity per store");
    let e = ExtentId(3);
    let records = vec![store.write(e, &value(e, 1, 64)).unwrap()];
    let cursor = store.change_seq();
    drop(store);
    let store = Store::with_records(backend, StoreConfig::default(), records).unwrap();
    store.write(e, &value(e, 2, 64)).unwrap();
    store.write(e, &value(e, 3, 64)).unwrap();
    // The cursor alone: the new run's second change, read as the next one.
    let read = store.changes_since(cursor).unwrap();
    assert_eq!(read.len(), 1, "the cursor cannot tell");
    assert_ne!(store.change_stream_id(), first, "the identity can");
    assert_ne!(store.change_stream_id(), 0);

    let tmp = tempfile::tempdir().unwrap();
    let durable = Store::open(tmp.path(), StoreConfig::default()).unwrap();
    let before = durable.change_stream_id();
    drop(durable);
    let durable = Store::open(tmp.path(), StoreConfig::default()).unwrap();
    assert_ne!(durable.change_stream_id(), before);
}
