//! Deterministic tests of the extent table's public contract.

use extentmeta::{Change, Error, ExtentId, ExtentTable, Location, State, TableConfig, checksum};

fn small_table() -> ExtentTable {
    let config = TableConfig::builder()
        .max_extents(1 << 16)
        .segment_len(64)
        .build()
        .expect("valid config");
    ExtentTable::new(config)
}

/// Location whose offset encodes (extent, generation), so a stale record is visible.
fn loc(id: ExtentId, generation: u64) -> Location {
    Location::new((id.0 % 7) as u16, id.0 << 20 | generation, 4096)
}

fn write(table: &ExtentTable, id: ExtentId) -> extentmeta::Snapshot {
    let s = table.snapshot(id).expect("snapshot");
    let b = table
        .transition(id, s.version(), Change::BeginWrite)
        .expect("begin");
    let g = b.generation() + 1;
    let change = Change::CommitWrite {
        location: loc(id, g),
        checksum: checksum(id, g, &g.to_le_bytes()),
    };
    table.transition(id, b.version(), change).expect("commit")
}

#[test]
fn monotonic_version_bumps_by_two_per_commit() {
    let table = small_table();
    let id = ExtentId(5);
    let mut last = table.snapshot(id).unwrap().version();
    for generation in 1..=10 {
        let s = write(&table, id);
        assert_eq!(s.generation(), generation);
        assert_eq!(s.version(), last + 4, "begin + commit = two commits");
        assert_eq!(s.location(), loc(id, generation));
        last = s.version();
    }
}

#[test]
fn monotonic_version_stale_transition_changes_nothing() {
    let table = small_table();
    let id = ExtentId(9);
    let s = write(&table, id);
    let stale = s.version() - 2;
    let err = table
        .transition(id, stale, Change::BeginCompact)
        .unwrap_err();
    match err {
        Error::VersionConflict {
            current,
            expected_version,
            ..
        } => {
            assert_eq!(expected_version, stale);
            assert_eq!(current, s);
        }
        other => panic!("expected conflict, got {other}"),
    }
    assert_eq!(table.snapshot(id).unwrap(), s, "nothing changed");
}

#[test]
fn odd_expected_version_is_a_conflict_not_a_lock() {
    let table = small_table();
    let id = ExtentId(1);
    let s = write(&table, id);
    let err = table
        .transition(id, s.version() + 1, Change::BeginCompact)
        .unwrap_err();
    assert_eq!(err.code(), "FPRE001");
    assert_eq!(table.snapshot(id).unwrap(), s);
    // The record is not left locked.
    table
        .transition(id, s.version(), Change::BeginCompact)
        .expect("still writable");
}

#[test]
fn illegal_transition_is_typed_and_changes_nothing() {
    let table = small_table();
    let id = ExtentId(2);
    let err = table.transition(
        id,
        0,
        Change::CommitCompact {
            location: loc(id, 0),
        },
    );
    assert_eq!(
        err.unwrap_err(),
        Error::IllegalTransition {
            extent: id,
            from: State::Vacant,
            write_pending: false,
            change: extentmeta::ChangeKind::CommitCompact,
        }
    );
    assert_eq!(table.snapshot(id).unwrap().version(), 0);
}

#[test]
fn unallocated_ids_read_as_vacant_without_allocating() {
    let table = small_table();
    let before = table.memory_bytes();
    let s = table.snapshot(ExtentId(60_000)).unwrap();
    assert_eq!(
        (s.state(), s.version(), s.generation()),
        (State::Vacant, 0, 0)
    );
    assert_eq!(table.memory_bytes(), before, "a read never allocates");
    assert_eq!(table.allocated_ids(0).count(), 0);
}

#[test]
fn out_of_range_is_a_typed_error() {
    let table = small_table();
    let id = ExtentId(1 << 16);
    assert_eq!(table.snapshot(id).unwrap_err().code(), "FPRE005");
    assert_eq!(
        table
            .transition(id, 0, Change::BeginWrite)
            .unwrap_err()
            .code(),
        "FPRE005"
    );
}

#[test]
fn sparse_ids_grow_one_segment_each() {
    let table = small_table();
    for id in [3u64, 4_000, 65_000] {
        write(&table, ExtentId(id));
    }
    let ids: Vec<u64> = table.allocated_ids(0).map(|i| i.0).collect();
    assert_eq!(ids.len(), 3 * 64);
    assert!(ids.contains(&3) && ids.contains(&4_000) && ids.contains(&65_000));
    let resumed: Vec<u64> = table.allocated_ids(4_001).map(|i| i.0).collect();
    assert_eq!(resumed.first(), Some(&4_001));
    assert!(!resumed.contains(&3));
}

#[test]
fn invalid_config_is_rejected() {
    let bad = [
        TableConfig::builder().max_extents(0).build(),
        TableConfig::builder().segment_len(3).build(),
        TableConfig::builder()
            .max_extents(1 << 40)
            .segment_len(1)
            .build(),
    ];
    for b in bad {
        assert_eq!(b.unwrap_err().code(), "FPRE008");
    }
}

/// The bounds `max_extents` states: up to 2^36 ids with the default
/// segments, 2^40 with segments of 2^18 records, never past 2^40.
#[test]
fn max_extents_meets_the_bounds_its_docs_state() {
    let build = |max: u64, segment: Option<usize>| {
        let b = TableConfig::builder().max_extents(max);
        match segment {
            Some(len) => b.segment_len(len),
            None => b,
        }
        .build()
    };
    assert!(build(1 << 36, None).is_ok());
    assert!(build((1 << 36) + 1, None).is_err());
    assert!(build(1 << 40, Some(1 << 18)).is_ok());
    assert!(build(1 << 40, Some(1 << 17)).is_err());
    assert!(build((1 << 40) + 1, Some(1 << 20)).is_err());
}

#[test]
fn no_torn_snapshot_under_threads() {
    // Each commit writes location.offset = id << 20 | generation and a checksum of
    // that generation: a snapshot mixing two commits would fail these checks.
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let table = small_table();
    let ids: Vec<ExtentId> = (0..4).map(ExtentId).collect();
    let (commits, writers_left, checked) =
        (AtomicU64::new(0), AtomicU64::new(2), AtomicU64::new(0));
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for round in 0..2_000u64 {
                    let id = ids[(round % 4) as usize];
                    let s = table.snapshot(id).unwrap();
                    if let Ok(b) = table.transition(id, s.version(), Change::BeginWrite) {
                        let g = b.generation() + 1;
                        let c = Change::CommitWrite {
                            location: loc(id, g),
                            checksum: checksum(id, g, &g.to_le_bytes()),
                        };
                        table
                            .transition(id, b.version(), c)
                            .expect("we hold the pending mark");
                        // Relaxed: a count, read after the scope joins.
                        commits.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // AcqRel, then Release: the last writer's store of `done` follows
                // both writers' commits; the reader's Acquire load pairs with it.
                if writers_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    done.store(true, Ordering::Release);
                }
            });
        }
        scope.spawn(|| {
            let mut last = [0u64; 4];
            // At least 20 000 snapshots, and on until both writers are done:
            // the reader overlaps every commit.
            let mut round = 0usize;
            while round < 20_000 || !done.load(Ordering::Acquire) {
                let id = ids[round % 4];
                let s = table.snapshot(id).unwrap();
                assert!(s.version() >= last[round % 4], "version went backwards");
                last[round % 4] = s.version();
                if s.state() == State::Durable {
                    let g = s.generation();
                    assert_eq!(s.location(), loc(id, g), "torn: location of another commit");
                    assert_eq!(s.checksum(), checksum(id, g, &g.to_le_bytes()));
                    // Relaxed: a count, read after the scope joins.
                    checked.fetch_add(1, Ordering::Relaxed);
                }
                round += 1;
            }
        });
    });
    // Every commit bumped its extent's generation by one: none was lost, and
    // the reader checked committed records, not only empty ones.
    let commits = commits.load(Ordering::Relaxed);
    let generations: u64 = ids
        .iter()
        .map(|&id| table.snapshot(id).unwrap().generation())
        .sum();
    assert!(commits > 0, "the writers committed nothing");
    assert_eq!(generations, commits, "a commit was lost");
    assert!(
        checked.load(Ordering::Relaxed) > 0,
        "the reader checked no committed record"
    );
}

#[test]
fn monotonic_version_rejected_transitions_on_unallocated_ids_allocate_nothing() {
    let table = small_table();
    let before = table.memory_bytes();
    let id = ExtentId(40_000);
    assert_eq!(
        table
            .transition(id, 2, Change::BeginWrite)
            .unwrap_err()
            .code(),
        "FPRE001"
    );
    assert_eq!(
        table
            .transition(id, 0, Change::Quarantine)
            .unwrap_err()
            .code(),
        "FPRE002"
    );
    assert_eq!(
        table.memory_bytes(),
        before,
        "no segment grown for a refusal"
    );
    table
        .transition(id, 0, Change::BeginWrite)
        .expect("a legal first transition grows");
    assert!(table.memory_bytes() > before);
}
