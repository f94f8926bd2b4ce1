//! Loom model checks of the extent table's seqlock protocol.
//!
//! Run with `ci/loom.sh` (release, debug assertions, `--cfg loom`, bounded
//! preemptions). Each model is two or three threads of one or two operations on a
//! four-id table of two-id segments. Every value a model writes encodes its extent
//! and content generation (location offset `id << 20 | generation`, checksum of the
//! generation seeded with the id), and every snapshot a model observes is compared
//! with the snapshots its transitions returned: a torn or stale snapshot can never
//! pass as a committed one. Readers use the single-attempt `try_snapshot`, so every
//! model is finite.
//!
//! The `mutant_*` tests weaken one ordering site of the protocol to `Relaxed` (a
//! fence is removed) and expect a model to fail with its assertion message: they
//! prove the suite would catch that ordering bug.

#![cfg(loom)]

use extentmeta::{
    Change, Error, ExtentId, ExtentTable, Location, Site, Snapshot, TableConfig, checksum, mutant,
};
use loom::model::Builder;
use loom::sync::Arc;
use loom::thread;

/// The extent most models work on: id 1, in the first segment.
const ID: ExtentId = ExtentId(1);

/// A four-id table of two-id segments.
fn table() -> Arc<ExtentTable> {
    let config = TableConfig::builder()
        .max_extents(4)
        .segment_len(2)
        .build()
        .expect("valid config");
    Arc::new(ExtentTable::new(config))
}

/// The location generation `generation` of `id` is written to: encodes both.
fn location(id: ExtentId, generation: u64) -> Location {
    Location::new(id.0 as u16, (id.0 << 20) | generation, 4096)
}

/// The checksum of generation `generation` of `id`: encodes both.
fn crc(id: ExtentId, generation: u64) -> u32 {
    checksum(id, generation, &generation.to_le_bytes())
}

/// The commit of generation `generation` of `id`.
fn commit_write(id: ExtentId, generation: u64) -> Change {
    Change::CommitWrite {
        location: location(id, generation),
        checksum: crc(id, generation),
    }
}

/// Preemptions a mutant model may use: every mutant below is caught with two (most
/// with one); fixed so that a low `LOOM_MAX_PREEMPTIONS` cannot hide a mutant.
const MUTANT_PREEMPTIONS: usize = 3;

/// Runs `model` under loom with the preemption bound from `LOOM_MAX_PREEMPTIONS`
/// (for the models too large to explore completely).
fn check_bounded(model: fn()) {
    Builder::new().check(model);
}

/// Runs `model` under loom with no preemption bound: every interleaving.
fn check_exhaustive(model: fn()) {
    let mut builder = Builder::new();
    builder.preemption_bound = None;
    builder.check(model);
}

/// Runs `model` with the ordering at `site` weakened; the model must then fail.
fn check_mutant(site: Site, model: fn()) {
    let mut builder = Builder::new();
    builder.preemption_bound = Some(MUTANT_PREEMPTIONS);
    mutant::with(site, || builder.check(model));
}

/// A snapshot a transition returned must be a record some commit could produce:
/// fields that encode its extent and generation, and readable bytes only once a
/// generation was committed.
fn assert_well_formed(s: &Snapshot) {
    let (id, generation) = (s.extent(), s.generation());
    assert_eq!(s.version() % 2, 0, "stale commit: odd version in {s:?}");
    if generation == 0 {
        assert_eq!(s.location(), Location::default(), "stale commit: {s:?}");
        assert_eq!(s.checksum(), 0, "stale commit: {s:?}");
        assert!(
            !s.is_readable(),
            "stale commit: readable generation 0 in {s:?}"
        );
    } else {
        assert_eq!(
            s.location(),
            location(id, generation),
            "stale commit: {s:?}"
        );
        assert_eq!(s.checksum(), crc(id, generation), "stale commit: {s:?}");
    }
}

/// An observed snapshot must equal one of the committed ones.
fn assert_committed(seen: Option<Snapshot>, committed: &[Snapshot]) {
    if let Some(s) = seen {
        assert!(
            committed.contains(&s),
            "torn snapshot: {s:?} is none of the committed {committed:?}"
        );
    }
}

/// Setup on the model's main thread, before any spawn: `BeginWrite` on `id`.
fn begin_write(table: &ExtentTable, id: ExtentId) -> Snapshot {
    table
        .transition(id, 0, Change::BeginWrite)
        .expect("setup: begin write")
}

/// The current snapshot carried by a version conflict.
fn conflict_current(err: Error, expected_version: u64) -> Snapshot {
    match err {
        Error::VersionConflict {
            extent,
            expected_version: expected,
            current,
        } => {
            assert_eq!(extent, current.extent(), "conflict names another extent");
            assert_eq!(
                expected, expected_version,
                "conflict misreports the expected version"
            );
            current
        }
        other => panic!("expected a version conflict, got {other}"),
    }
}

// ---- Models -------------------------------------------------------------------

/// One reader races the commit of generation 1 (all three field words change).
fn reader_vs_commit() {
    let table = table();
    let begun = begin_write(&table, ID);
    let writer = {
        let table = table.clone();
        thread::spawn(move || table.transition(ID, begun.version(), commit_write(ID, 1)))
    };
    let seen = table.try_snapshot(ID).expect("in range");
    let committed = writer
        .join()
        .expect("writer")
        .expect("the only writer commits");
    assert_well_formed(&committed);
    assert_committed(seen, &[begun, committed]);
}

/// Two writers race, the second computing its change from what it reads; the main
/// thread reads.
fn two_writers_and_reader() {
    let table = table();
    let begun = begin_write(&table, ID);
    let committer = {
        let table = table.clone();
        thread::spawn(move || table.transition(ID, begun.version(), commit_write(ID, 1)))
    };
    let follower = {
        let table = table.clone();
        thread::spawn(move || {
            let s = table.try_snapshot(ID).expect("in range")?;
            let change = if s.write_pending() {
                Change::AbortWrite
            } else {
                Change::BeginCompact
            };
            Some((s, table.transition(ID, s.version(), change)))
        })
    };
    let seen = table.try_snapshot(ID).expect("in range");
    let committed_write = committer.join().expect("committer");
    let followed = follower.join().expect("follower");

    let mut committed = vec![begun];
    committed.extend(committed_write.clone().ok());
    if let Some((s, Ok(next))) = &followed {
        committed.push(*next);
        assert_eq!(next.version(), s.version() + 2, "one commit bumps by 2");
    }
    for s in &committed {
        assert_well_formed(s);
    }
    if let Err(err) = committed_write {
        assert_committed(Some(conflict_current(err, begun.version())), &committed);
    }
    if let Some((s, result)) = followed {
        assert_committed(Some(s), &committed);
        if let Err(err) = result {
            assert_committed(Some(conflict_current(err, s.version())), &committed);
        }
    }
    assert_committed(seen, &committed);
}

/// Two compare-and-swap transitions from the same version: exactly one wins and the
/// loser's conflict carries the winner's commit.
fn cas_race() {
    let table = table();
    let begun = begin_write(&table, ID);
    let committer = {
        let table = table.clone();
        thread::spawn(move || table.transition(ID, begun.version(), commit_write(ID, 1)))
    };
    let aborted = table.transition(ID, begun.version(), Change::AbortWrite);
    let committed = committer.join().expect("committer");
    let (winner, loser) = match (committed, aborted) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        (Ok(a), Ok(b)) => panic!("two winners from one version: {a:?} and {b:?}"),
        (Err(a), Err(b)) => panic!("no winner: {a} / {b}"),
    };
    assert_well_formed(&winner);
    assert_eq!(
        winner.version(),
        begun.version() + 2,
        "one commit bumps by 2"
    );
    let current = conflict_current(loser, begun.version());
    assert_committed(Some(current), &[begun, winner]);
    assert_eq!(
        current, winner,
        "the conflict must carry the winner's snapshot"
    );
    let last = table.try_snapshot(ID).expect("in range");
    assert_eq!(last, Some(winner), "the winner's commit is the record");
}

/// A transition from a stale version races the commit of a newer one: it
/// conflicts, carries a committed snapshot, changes nothing and never blocks the
/// current writer.
fn stale_vs_current() {
    let table = table();
    let begun = begin_write(&table, ID);
    let written = table
        .transition(ID, begun.version(), commit_write(ID, 1))
        .expect("setup: commit write");
    let rewriting = table
        .transition(ID, written.version(), Change::BeginWrite)
        .expect("setup: begin rewrite");
    let stale = {
        let table = table.clone();
        // AbortWrite is legal from the state at `rewriting`: only the version refuses
        // it.
        thread::spawn(move || table.transition(ID, begun.version(), Change::AbortWrite))
    };
    let rewritten = table
        .transition(ID, rewriting.version(), commit_write(ID, 2))
        .expect("a stale transition never blocks a current one");
    let refused = stale.join().expect("stale writer");
    assert_well_formed(&rewritten);
    let current = conflict_current(
        refused.expect_err("a stale transition never commits"),
        begun.version(),
    );
    assert_committed(Some(current), &[rewriting, rewritten]);
    let last = table.try_snapshot(ID).expect("in range");
    assert_eq!(
        last,
        Some(rewritten),
        "the stale transition changed the record"
    );
}

/// One thread commits twice while another snapshots twice.
fn successive_snapshots_vs_two_commits() {
    let table = table();
    let begun = begin_write(&table, ID);
    let writer = {
        let table = table.clone();
        thread::spawn(move || {
            let written = table.transition(ID, begun.version(), commit_write(ID, 1))?;
            let compacting = table.transition(ID, written.version(), Change::BeginCompact)?;
            Ok::<_, Error>([written, compacting])
        })
    };
    let first = table.try_snapshot(ID).expect("in range");
    let second = table.try_snapshot(ID).expect("in range");
    let [written, compacting] = writer.join().expect("writer").expect("the only writer");
    let committed = [begun, written, compacting];
    for s in &committed {
        assert_well_formed(s);
    }
    assert_committed(first, &committed);
    assert_committed(second, &committed);
    if let (Some(a), Some(b)) = (first, second) {
        assert!(
            a.version() <= b.version(),
            "version went backwards: {a:?} then {b:?}"
        );
    }
}

/// The first transitions into an unallocated segment race a reader of two ids in it.
fn growth_vs_reader() {
    let table = table();
    let (id, neighbour) = (ExtentId(3), ExtentId(2));
    let writer = {
        let table = table.clone();
        thread::spawn(move || {
            let begun = table.transition(id, 0, Change::BeginWrite)?;
            let written = table.transition(id, begun.version(), commit_write(id, 1))?;
            Ok::<_, Error>([begun, written])
        })
    };
    let seen = table.try_snapshot(id).expect("in range");
    let beside = table.try_snapshot(neighbour).expect("in range");
    let [begun, written] = writer.join().expect("writer").expect("the only writer");
    assert_well_formed(&written);
    assert_committed(seen, &[Snapshot::vacant(id), begun, written]);
    assert_committed(beside, &[Snapshot::vacant(neighbour)]);
}

/// A writer names the version it expects without reading the record (it knows the
/// other writer commits once): its change must still be computed from that commit.
fn known_version_vs_commit() {
    let table = table();
    let begun = begin_write(&table, ID);
    let expected = begun.version() + 2;
    let committer = {
        let table = table.clone();
        thread::spawn(move || table.transition(ID, begun.version(), commit_write(ID, 1)))
    };
    let compacted = table.transition(ID, expected, Change::BeginCompact);
    let written = committer
        .join()
        .expect("committer")
        .expect("the only committer");
    assert_eq!(written.version(), expected, "one commit bumps by 2");
    match compacted {
        Ok(s) => {
            assert_well_formed(&s);
            assert_eq!(
                (s.generation(), s.location(), s.checksum()),
                (written.generation(), written.location(), written.checksum()),
                "stale commit: {s:?} not computed from {written:?}"
            );
        }
        Err(err) => assert_committed(Some(conflict_current(err, expected)), &[begun, written]),
    }
}

// ---- Invariants ---------------------------------------------------------------
//
// Exhaustive where every interleaving is explored in seconds; bounded by
// `LOOM_MAX_PREEMPTIONS` for the three-thread and the two-commit models.

#[test]
fn no_torn_snapshot_reader_vs_commit() {
    check_exhaustive(reader_vs_commit);
}

#[test]
fn no_torn_snapshot_two_writers_and_reader() {
    check_bounded(two_writers_and_reader);
}

#[test]
fn no_torn_snapshot_reader_vs_segment_growth() {
    check_exhaustive(growth_vs_reader);
}

#[test]
fn monotonic_version_cas_race_has_exactly_one_winner() {
    check_exhaustive(cas_race);
}

#[test]
fn monotonic_version_stale_transition_changes_nothing() {
    check_exhaustive(stale_vs_current);
}

#[test]
fn monotonic_version_successive_snapshots_never_go_backwards() {
    check_bounded(successive_snapshots_vs_two_commits);
}

#[test]
fn no_stale_commit_when_expected_version_is_known_in_advance() {
    check_exhaustive(known_version_vs_commit);
}

// ---- Ordering mutants -------------------------------------------------------------
//
// Each weakens one site and expects the named model to fail its own assertion.
// Several models per site, so that changing one model cannot silently lose the
// check.

#[test]
#[should_panic(expected = "torn snapshot")]
fn mutant_reader_load_relaxed_is_caught_by_reader_vs_commit() {
    check_mutant(Site::ReaderLoad, reader_vs_commit);
}

#[test]
#[should_panic(expected = "torn snapshot")]
fn mutant_reader_load_relaxed_is_caught_by_cas_race() {
    check_mutant(Site::ReaderLoad, cas_race);
}

#[test]
#[should_panic(expected = "torn snapshot")]
fn mutant_reader_load_relaxed_is_caught_by_successive_snapshots() {
    check_mutant(Site::ReaderLoad, successive_snapshots_vs_two_commits);
}

#[test]
#[should_panic(expected = "torn snapshot")]
fn mutant_reader_fence_omitted_is_caught_by_reader_vs_commit() {
    check_mutant(Site::ReaderFence, reader_vs_commit);
}

#[test]
#[should_panic(expected = "torn snapshot")]
fn mutant_reader_fence_omitted_is_caught_by_stale_vs_current() {
    check_mutant(Site::ReaderFence, stale_vs_current);
}

#[test]
#[should_panic(expected = "torn snapshot")]
fn mutant_reader_fence_omitted_is_caught_by_two_writers_and_reader() {
    check_mutant(Site::ReaderFence, two_writers_and_reader);
}

#[test]
#[should_panic(expected = "torn snapshot")]
fn mutant_writer_fence_omitted_is_caught_by_reader_vs_commit() {
    check_mutant(Site::WriterFence, reader_vs_commit);
}

#[test]
#[should_panic(expected = "torn snapshot")]
fn mutant_writer_fence_omitted_is_caught_by_stale_vs_current() {
    check_mutant(Site::WriterFence, stale_vs_current);
}

#[test]
#[should_panic(expected = "torn snapshot")]
fn mutant_writer_fence_omitted_is_caught_by_segment_growth() {
    check_mutant(Site::WriterFence, growth_vs_reader);
}

#[test]
#[should_panic(expected = "torn snapshot")]
fn mutant_publish_store_relaxed_is_caught_by_reader_vs_commit() {
    check_mutant(Site::PublishStore, reader_vs_commit);
}

#[test]
#[should_panic(expected = "torn snapshot")]
fn mutant_publish_store_relaxed_is_caught_by_cas_race() {
    check_mutant(Site::PublishStore, cas_race);
}

#[test]
#[should_panic(expected = "torn snapshot")]
fn mutant_publish_store_relaxed_is_caught_by_segment_growth() {
    check_mutant(Site::PublishStore, growth_vs_reader);
}

/// The lock CAS's `Acquire` is what makes a writer compute from the commit it
/// replaces when nothing else synchronised it with that commit: here the writer
/// names a version it never read. (A writer that read its version through the table
/// already synchronised with that commit through the reader's acquire load, so no
/// other model can catch this mutant.)
#[test]
#[should_panic(expected = "stale commit")]
fn mutant_lock_cas_relaxed_is_caught_by_known_version() {
    check_mutant(Site::LockCas, known_version_vs_commit);
}
