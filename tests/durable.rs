//! The durable store on real files: restart round trips, rotation, the directory
//! lock (in this process; another's is `lock_process.rs`), bad input on open (each with its FPRE code,
//! and nothing on disk modified by the failed open) and torn journal tails.
//!
//! Invariants checked: 9 (every acknowledged write, compaction, drain and
//! quarantine survives a restart, exactly), 10 (a bad location is never handed out
//! again after a restart) and 11 (a failed open changes no file).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
#![cfg(unix)]

mod common;

use common::{files, refused, value};
use extentmeta::fs::{Fs, FsFile, StdFs};
use extentmeta::{CompactOutcome, ExtentId, Location, State, Store, StoreConfig, Verdict};
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// No cache (every read goes to the files), no background workers.
fn config(devices: u16, journal_max_bytes: u64) -> StoreConfig {
    StoreConfig::builder()
        .devices(devices)
        .cache_bytes(0)
        .prefetch_workers(0)
        .journal_max_bytes(journal_max_bytes)
        .build()
        .unwrap()
}

/// Extent → the generation its value encodes (the test's own counter, not the
/// store's).
type Model = HashMap<u64, u64>;

fn len_of(id: u64, generation: u64) -> usize {
    600 + ((id * 131 + generation * 17) % 5000) as usize
}

fn put(store: &Store, model: &mut Model, id: u64) {
    let generation = model.get(&id).copied().unwrap_or(0) + 1;
    store
        .write(
            ExtentId(id),
            &value(ExtentId(id), generation, len_of(id, generation)),
        )
        .unwrap();
    model.insert(id, generation);
}

/// Every modelled extent reads back exactly its last acknowledged value.
fn check(store: &Store, model: &Model) {
    common::check_values(store, model.iter().map(|(&i, &g)| (i, g)), len_of);
}

fn reopen(dir: &Path, config: &StoreConfig, model: &Model) -> Store {
    let store = Store::open(dir, config.clone()).unwrap();
    let report = store.recovery().unwrap();
    assert!(!report.created, "a reopen recovers, it does not create");
    check(&store, model);
    store
}

fn names_with(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = files(dir)
        .into_keys()
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// The newest journal file (not a torn tail's evidence beside it).
fn newest_journal(dir: &Path) -> PathBuf {
    let mut journals = names_with(dir, "journal-");
    journals.retain(|name| !name.contains(".dropped-") && name != "journal-recycled");
    dir.join(journals.pop().unwrap())
}

fn current_checkpoint(dir: &Path) -> PathBuf {
    let pointer = std::fs::read(dir.join("CURRENT")).unwrap();
    let n = u64::from_le_bytes(pointer[12..20].try_into().unwrap());
    dir.join(format!("checkpoint-{n:020}"))
}

/// A store with a few acknowledged writes, closed; returns its model.
fn populated(dir: &Path, config: &StoreConfig, writes: u64) -> Model {
    let store = Store::open(dir, config.clone()).unwrap();
    assert!(store.recovery().unwrap().created);
    let mut model = Model::new();
    for i in 0..writes {
        put(&store, &mut model, i % 7);
    }
    model
}

#[test]
fn writes_overwrites_compaction_and_drain_survive_several_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(2, 64 << 20);
    let mut model = Model::new();
    {
        let store = Store::open(dir.path(), config.clone()).unwrap();
        assert!(store.recovery().unwrap().created);
        for id in 0..40 {
            put(&store, &mut model, id);
        }
    }
    // Cycle 1: overwrites.
    {
        let store = reopen(dir.path(), &config, &model);
        for id in (0..40).step_by(3) {
            put(&store, &mut model, id);
        }
    }
    // Cycle 2: compactions move extents; their generation stays.
    let mut moved = HashMap::new();
    {
        let store = reopen(dir.path(), &config, &model);
        for id in (1..40).step_by(4) {
            let before = store.snapshot(ExtentId(id)).unwrap();
            store.compact(ExtentId(id)).unwrap();
            let after = store.snapshot(ExtentId(id)).unwrap();
            assert_ne!(before.location(), after.location());
            moved.insert(id, after.location());
        }
    }
    // Cycle 3: the compactions' new locations were recovered; drain device 0.
    {
        let store = reopen(dir.path(), &config, &model);
        for (&id, &location) in &moved {
            assert_eq!(store.snapshot(ExtentId(id)).unwrap().location(), location);
        }
        store.drain(0).unwrap();
        for &id in model.keys() {
            assert_eq!(store.snapshot(ExtentId(id)).unwrap().location().device, 1);
        }
    }
    // Cycle 4: the drain survived; more writes after it.
    {
        let store = reopen(dir.path(), &config, &model);
        for &id in model.keys() {
            assert_eq!(store.snapshot(ExtentId(id)).unwrap().location().device, 1);
        }
        for id in 35..50 {
            put(&store, &mut model, id);
        }
    }
    // Cycle 5: exact; versions and generations only grew.
    let snaps: Vec<_> = {
        let store = reopen(dir.path(), &config, &model);
        model
            .keys()
            .map(|&id| store.snapshot(ExtentId(id)).unwrap())
            .collect()
    };
    let store = reopen(dir.path(), &config, &model);
    for s in snaps {
        assert_eq!(store.snapshot(s.extent()).unwrap(), s, "reopen is exact");
    }
}

/// A store in `dir` with eight inline writes no device sync has covered yet,
/// and `victim`'s bytes damaged in the device file, as after a failed
/// writeback dropped their pages and before the store wrote them again: the
/// store, what it acknowledged, and `victim`'s record.
fn damaged_before_its_sync(
    dir: &Path,
    config: &StoreConfig,
    victim: ExtentId,
) -> (Store, Model, extentmeta::Snapshot) {
    let store = Store::open(dir, config.clone()).unwrap();
    let mut model = Model::new();
    for id in 0..8 {
        put(&store, &mut model, id);
    }
    assert!(store.stats().inline_unsynced > 0, "inline, not synced yet");
    let snap = store.snapshot(victim).unwrap();
    damage(dir, snap.location());
    (store, model, snap)
}

/// Flips two bytes of the extent at `at` in `dir`'s device 0 file.
fn damage(dir: &Path, at: Location) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("dev0000.extents"))
        .unwrap();
    let mut b = [0u8; 2];
    file.read_at(&mut b, at.offset + 40).unwrap();
    file.write_all_at(&[!b[0], !b[1]], at.offset + 40).unwrap();
}

fn overlaps(a: Location, b: Location) -> bool {
    a.device == b.device && a.offset < b.end() && b.offset < a.end()
}

#[test]
fn quarantine_survives_restart_and_the_bad_location_is_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(1, 64 << 20);
    let mut model = Model::new();
    let victim = ExtentId(3);
    let bad = {
        let store = Store::open(dir.path(), config.clone()).unwrap();
        for id in 0..8 {
            put(&store, &mut model, id);
        }
        // Closed and opened again, so that a sync of the device covers the
        // writes: damage to an inline write's bytes before that is mended from
        // its journal record (see the test below).
        drop(store);
        let store = reopen(dir.path(), &config, &model);
        let snap = store.snapshot(victim).unwrap();
        damage(dir.path(), snap.location());
        assert_eq!(store.verify(victim).unwrap_err().code(), "FPRE004");
        assert_eq!(store.snapshot(victim).unwrap().state(), State::Quarantined);
        snap.location()
    };
    model.remove(&victim.0);
    for cycle in 0..3 {
        let store = reopen(dir.path(), &config, &model);
        assert!(
            store.recovery().unwrap().bad_locations >= 1,
            "cycle {cycle}"
        );
        let kept = store.snapshot(victim).unwrap();
        assert_eq!(kept.state(), State::Quarantined, "cycle {cycle}");
        assert_eq!(kept.location(), bad);
        assert_eq!(store.read(victim).unwrap_err().code(), "FPRE013");
        // Enough new writes to use up the free space around the bad location.
        for id in 100 + cycle * 40..140 + cycle * 40 {
            put(&store, &mut model, id);
            let l = store.snapshot(ExtentId(id)).unwrap().location();
            assert!(!overlaps(l, bad), "bad location {bad:?} reused by {l:?}");
        }
    }
}

#[test]
fn damage_to_an_inline_write_no_device_sync_covered_is_mended_from_its_journal_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(1, 64 << 20);
    let victim = ExtentId(3);
    let (store, model, snap) = damaged_before_its_sync(dir.path(), &config, victim);
    // Its only durable copy is the journal's: the verifier writes it again
    // from there and reads it right. No FPRE004, no quarantine.
    assert!(matches!(store.verify(victim), Ok(Verdict::Ok { .. })));
    let stats = store.stats();
    assert_eq!((stats.fpre004, stats.quarantines), (0, 0), "{stats:?}");
    assert_eq!(stats.inline_read_back, 1, "{stats:?}");
    assert_eq!(store.snapshot(victim).unwrap(), snap);
    drop(store);
    // The bytes on the device are right again.
    let mut back = vec![0u8; snap.location().length as usize];
    let file = std::fs::File::open(dir.path().join("dev0000.extents")).unwrap();
    file.read_at(&mut back, snap.location().offset).unwrap();
    assert!(snap.check(&back).is_ok());
    reopen(dir.path(), &config, &model);
}

#[test]
fn a_compaction_mends_an_inline_writes_damaged_bytes_from_its_journal_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(1, 64 << 20);
    let (store, model, snap) = damaged_before_its_sync(dir.path(), &config, ExtentId(6));
    // The source reads wrong where only the journal holds the bytes durably:
    // they are written again and the move goes on, instead of failing with a
    // checksum mismatch.
    let moved = match store.compact(snap.extent()).unwrap() {
        CompactOutcome::Committed(moved) => moved,
        other => panic!("{other:?}"),
    };
    assert_ne!(moved.location(), snap.location());
    assert_eq!(moved.generation(), snap.generation());
    assert_eq!(store.stats().inline_read_back, 1, "{:?}", store.stats());
    assert_eq!(store.stats().quarantines, 0);
    drop(store);
    reopen(dir.path(), &config, &model);
}

#[test]
fn a_backup_holds_the_bytes_of_an_inline_write_the_device_file_lost() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(1, 64 << 20);
    let live = dir.path().join("live");
    let (store, model, _) = damaged_before_its_sync(&live, &config, ExtentId(5));
    // The backup takes those bytes from the journal record, which it does
    // not copy: every extent reads back right from it.
    store.checkpoint_to(dir.path().join("backup")).unwrap();
    drop(store);
    reopen(&dir.path().join("backup"), &config, &model);
}

/// With `recycle_journals(false)`, checkpoints remove the journal they retire,
/// and one kept by an earlier open with recycling goes at the next checkpoint;
/// every acknowledged write reads back either way.
#[test]
fn journals_are_not_recycled_when_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let recycled = |dir: &Path| names_with(dir, "journal-").contains(&"journal-recycled".into());
    let mut model = Model::new();
    let store = Store::open(dir.path(), config(2, 4096)).unwrap();
    for i in 0..200 {
        put(&store, &mut model, i % 31);
    }
    assert!(store.stats().journal_number > 3, "rotated");
    drop(store);
    assert!(recycled(dir.path()), "recycled by default");
    let off = StoreConfig::builder()
        .devices(2)
        .cache_bytes(0)
        .prefetch_workers(0)
        .journal_max_bytes(4096)
        .recycle_journals(false)
        .build()
        .unwrap();
    let store = reopen(dir.path(), &off, &model);
    let number = store.stats().journal_number;
    for i in 0..200 {
        put(&store, &mut model, i % 31);
    }
    assert!(store.stats().journal_number > number + 2, "rotated");
    drop(store);
    assert!(
        !recycled(dir.path()),
        "{:?}",
        names_with(dir.path(), "journal-")
    );
    reopen(dir.path(), &off, &model);
}

#[test]
fn rotation_keeps_one_checkpoint_and_the_journals_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(2, 4096);
    let mut model = Model::new();
    let mut last_number = 0;
    for cycle in 0..3 {
        let store = if cycle == 0 {
            Store::open(dir.path(), config.clone()).unwrap()
        } else {
            reopen(dir.path(), &config, &model)
        };
        for i in 0..300 {
            put(&store, &mut model, (i * 7 + cycle) % 97);
        }
        let stats = store.stats();
        assert!(
            stats.journal_number > last_number + 2,
            "rotations happened: {} after {last_number}",
            stats.journal_number
        );
        last_number = stats.journal_number;
        drop(store);
        let checkpoints = names_with(dir.path(), "checkpoint-");
        assert_eq!(checkpoints.len(), 1, "{checkpoints:?}");
        let n: u64 = checkpoints[0]["checkpoint-".len()..].parse().unwrap();
        let journals = names_with(dir.path(), "journal-");
        assert!(
            journals.iter().any(|j| j == "journal-recycled"),
            "the retired journal is kept for the next switch: {journals:?}"
        );
        for j in journals.iter().filter(|j| *j != "journal-recycled") {
            let jn: u64 = j["journal-".len()..].parse().unwrap();
            assert!(jn >= n, "{j} is older than checkpoint {n}");
        }
        assert_eq!(
            current_checkpoint(dir.path()),
            dir.path().join(&checkpoints[0])
        );
    }
    let store = reopen(dir.path(), &config, &model);
    assert_eq!(store.recovery().unwrap().records, model.len() as u64);
}

#[test]
fn second_open_is_locked_and_the_first_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(2, 64 << 20);
    let mut model = Model::new();
    let store = Store::open(dir.path(), config.clone()).unwrap();
    put(&store, &mut model, 1);
    let before = files(dir.path());
    let err = Store::open(dir.path(), config.clone())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), "FPRE026", "{err}");
    assert_eq!(
        files(dir.path()),
        before,
        "the refused open changed nothing"
    );
    put(&store, &mut model, 2);
    put(&store, &mut model, 1);
    check(&store, &model);
    drop(store);
    reopen(dir.path(), &config, &model);
}

/// The byte offset of each frame of a journal or checkpoint file (up to the
/// zeros of a journal's allocated space).
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 32;
    while at + 24 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            // The zeros of space allocated ahead of the appends.
            break;
        }
        offsets.push(at);
        let payload = &bytes[at + 24..(at + 24 + len).min(bytes.len())];
        at += 24 + len + common::inline_data_len(payload);
    }
    offsets
}

#[test]
fn corrupt_record_in_the_middle_of_the_journal_is_fpre021() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(2, 64 << 20);
    populated(dir.path(), &config, 20);
    let journal = newest_journal(dir.path());
    let mut bytes = std::fs::read(&journal).unwrap();
    let offsets = frame_offsets(&bytes);
    assert!(
        offsets.len() >= 20,
        "one frame per write: {}",
        offsets.len()
    );
    let mid = offsets[offsets.len() / 2];
    bytes[mid + 28] ^= 0x5a; // payload byte: the frame fails its CRC
    std::fs::write(&journal, &bytes).unwrap();
    let err = refused(dir.path(), &config, "FPRE021");
    assert!(
        err.to_string().contains("journal-"),
        "names the file: {err}"
    );
}

#[test]
fn truncated_checkpoint_is_fpre022() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(2, 4096);
    populated(dir.path(), &config, 200); // rotations: a checkpoint with records
    let checkpoint = current_checkpoint(dir.path());
    let len = std::fs::metadata(&checkpoint).unwrap().len();
    assert!(len > 200, "the checkpoint holds records");
    OpenOptions::new()
        .write(true)
        .open(&checkpoint)
        .unwrap()
        .set_len(len - 30)
        .unwrap();
    refused(dir.path(), &config, "FPRE022");
}

#[test]
fn pointer_naming_a_missing_checkpoint_is_fpre023() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(2, 64 << 20);
    populated(dir.path(), &config, 5);
    std::fs::remove_file(current_checkpoint(dir.path())).unwrap();
    let err = refused(dir.path(), &config, "FPRE023");
    assert!(err.to_string().contains("checkpoint-"), "{err}");
}

/// The pointer file goes missing: the open must refuse the directory (FPRE023
/// naming `CURRENT`), never create a fresh store over it, and change nothing;
/// with the files put back, every acknowledged value is there. Stores that
/// never rotated and that rotated, each losing: the pointer alone; the pointer
/// with the device files emptied (only the journals show that the store held
/// records); every metadata file (only the device files show it).
#[test]
fn a_missing_pointer_is_fpre023_and_changes_nothing() {
    for rotated in [false, true] {
        for lost in ["pointer", "pointer and device bytes", "all metadata"] {
            let dir = tempfile::tempdir().unwrap();
            let config = config(2, if rotated { 4096 } else { 64 << 20 });
            let model = populated(dir.path(), &config, if rotated { 200 } else { 20 });
            let journal = newest_journal(dir.path());
            let first = journal.ends_with("journal-00000000000000000001");
            assert_eq!(first, !rotated, "{journal:?}");
            let saved = files(dir.path());
            let devices: Vec<_> = (saved.keys())
                .filter(|n| n.starts_with("dev"))
                .cloned()
                .collect();
            assert_eq!(devices.len(), 2, "{devices:?}");
            for name in saved.keys() {
                let path = dir.path().join(name);
                match lost {
                    "pointer" if name == "CURRENT" => std::fs::remove_file(path).unwrap(),
                    "pointer and device bytes" if name == "CURRENT" => {
                        std::fs::remove_file(path).unwrap()
                    }
                    "pointer and device bytes" if devices.contains(name) => {
                        std::fs::File::create(path).map(drop).unwrap()
                    }
                    "all metadata"
                        if name == "CURRENT"
                            || name.starts_with("checkpoint-")
                            || name.starts_with("journal-") =>
                    {
                        std::fs::remove_file(path).unwrap()
                    }
                    _ => {}
                }
            }
            let err = refused(dir.path(), &config, "FPRE023");
            assert!(
                err.to_string().contains("CURRENT"),
                "rotated {rotated}, lost {lost}: {err}"
            );
            for (name, bytes) in &saved {
                std::fs::write(dir.path().join(name), bytes).unwrap();
            }
            reopen(dir.path(), &config, &model);
        }
    }
}

/// Writes the format one past the file's (this build's) into its header;
/// the new number.
fn bump_format(path: &Path) -> u32 {
    let mut bytes = std::fs::read(path).unwrap();
    let next = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) + 1;
    bytes[8..12].copy_from_slice(&next.to_le_bytes());
    std::fs::write(path, &bytes).unwrap();
    next
}

/// A batch whose group commit a crash cut after some of its frames (a torn tail
/// at a frame boundary, or inside a later frame) is dropped whole; the journal is
/// cut before it, so writes after the reopen never follow half a batch, and a
/// second reopen finds them.
#[test]
fn a_batch_cut_short_by_a_torn_tail_is_dropped_whole() {
    let config = config(2, 64 << 20);
    for keep in [1usize, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let mut model = populated(dir.path(), &config, 8);
        {
            let store = Store::open(dir.path(), config.clone())
                .unwrap_or_else(|e| panic!("keep {keep}: reopen after populating: {e:?}"));
            let items: Vec<(u64, Vec<u8>)> = (0..4)
                .map(|id| {
                    let generation = model[&id] + 1;
                    (id, value(ExtentId(id), generation, len_of(id, generation)))
                })
                .collect();
            let batch: Vec<(ExtentId, &[u8])> = (items.iter())
                .map(|(id, v)| (ExtentId(*id), v.as_slice()))
                .collect();
            store.write_batch(&batch).unwrap();
            store.close().unwrap();
        }
        // The journal: ..., BatchBegin, 4 records, close marker. Cut after the
        // marker and `keep` records (plus a few bytes of the next frame).
        let journal = newest_journal(dir.path());
        let bytes = std::fs::read(&journal).unwrap();
        let offsets = frame_offsets(&bytes);
        let begin = offsets.len() - 6;
        assert_eq!(bytes[offsets[begin] + 24], 10, "the batch marker's tag");
        let cut = offsets[begin + 1 + keep] + 7;
        std::fs::write(&journal, &bytes[..cut]).unwrap();
        let store = reopen(dir.path(), &config, &model);
        assert!(store.recovery().unwrap().torn_tail_dropped);
        // None of the batch: every extent at its generation before it.
        check(&store, &model);
        put(&store, &mut model, 6);
        put(&store, &mut model, 1);
        drop(store);
        reopen(dir.path(), &config, &model);
    }
}

/// A directory whose pointer says format 2 (written before inline records) opens,
/// and the open writes the pointer again in this build's format: a build that
/// reads only format 2 then refuses the directory instead of reading inline
/// records as a torn tail.
#[test]
fn an_older_pointer_is_rewritten_in_this_format_at_open() {
    let config = config(2, 64 << 20);
    let dir = tempfile::tempdir().unwrap();
    let model = populated(dir.path(), &config, 5);
    let path = dir.path().join("CURRENT");
    let format = |bytes: &[u8]| u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    let current = format(&bytes);
    assert!(current > 2);
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..20]);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let store = reopen(dir.path(), &config, &model);
    drop(store);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(format(&bytes), current, "rewritten in this build's format");
    reopen(dir.path(), &config, &model);
}

#[test]
fn newer_format_is_fpre024_in_pointer_checkpoint_and_journal() {
    let config = config(2, 64 << 20);
    for which in ["CURRENT", "checkpoint", "journal"] {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path(), &config, 5);
        let path = match which {
            "CURRENT" => dir.path().join("CURRENT"),
            "checkpoint" => current_checkpoint(dir.path()),
            _ => newest_journal(dir.path()),
        };
        let newer = bump_format(&path);
        let err = refused(dir.path(), &config, "FPRE024");
        assert!(
            err.to_string().contains(&format!("format version {newer}")),
            "{which}: {err}"
        );
    }
}

/// A flipped high bit of the format field (its CRC then fails) is a damaged
/// file, FPRE022, not one a newer build wrote: 30 of the field's 32 single
/// bit flips give a number past any format a later build could write. The
/// journal's header is damage too (FPRE021), or a torn tail.
#[test]
fn a_flipped_format_bit_is_damage_not_a_newer_format() {
    let config = config(2, 64 << 20);
    for which in ["CURRENT", "checkpoint"] {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path(), &config, 5);
        let path = match which {
            "CURRENT" => dir.path().join("CURRENT"),
            _ => current_checkpoint(dir.path()),
        };
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[11] ^= 0x80;
        std::fs::write(&path, &bytes).unwrap();
        let err = refused(dir.path(), &config, "FPRE022");
        assert!(!err.to_string().contains("newer"), "{which}: {err}");
    }
}

/// An emptied checkpoint is missing metadata (FPRE023), as the error's docs
/// say, not a damaged one.
#[test]
fn an_empty_checkpoint_is_fpre023() {
    let config = config(2, 64 << 20);
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path(), &config, 5);
    std::fs::write(current_checkpoint(dir.path()), b"").unwrap();
    refused(dir.path(), &config, "FPRE023");
}

#[test]
fn missing_or_short_device_file_is_fpre025() {
    let config = config(2, 64 << 20);
    // Missing.
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path(), &config, 20);
    std::fs::remove_file(dir.path().join("dev0001.extents")).unwrap();
    let err = refused(dir.path(), &config, "FPRE025");
    assert!(err.to_string().contains("device 1"), "{err}");
    // Shorter than a referenced location (the highest one on device 0).
    let dir = tempfile::tempdir().unwrap();
    let model = populated(dir.path(), &config, 20);
    let end = {
        let store = Store::open(dir.path(), config.clone()).unwrap();
        model
            .keys()
            .map(|&id| store.snapshot(ExtentId(id)).unwrap().location())
            .filter(|l| l.device == 0)
            .map(|l| l.end())
            .max()
            .unwrap()
    };
    OpenOptions::new()
        .write(true)
        .open(dir.path().join("dev0000.extents"))
        .unwrap()
        .set_len(end - 1)
        .unwrap();
    let err = refused(dir.path(), &config, "FPRE025");
    assert!(err.to_string().contains("device 0"), "{err}");
}

#[test]
fn lock_held_in_this_process_is_fpre026_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(2, 64 << 20);
    let model = populated(dir.path(), &config, 5);
    let store = Store::open(dir.path(), config.clone()).unwrap();
    refused(dir.path(), &config, "FPRE026");
    check(&store, &model);
}

#[test]
fn torn_journal_tail_is_dropped_and_acknowledged_writes_stay() {
    let config = config(2, 64 << 20);
    for tear in ["garbage", "cut"] {
        let dir = tempfile::tempdir().unwrap();
        let model = populated(dir.path(), &config, 20);
        let journal = newest_journal(dir.path());
        let mut bytes = std::fs::read(&journal).unwrap();
        // The store was closed: its last frame is the close marker. Without it the
        // journal is as a crash before the close left it.
        let offsets = frame_offsets(&bytes);
        bytes.truncate(*offsets.last().unwrap());
        let mut expected = model.clone();
        let valid = match tear {
            "garbage" => {
                let valid = bytes.len();
                bytes.extend((0..300u32).map(|i| (i * 37 + 11) as u8));
                valid
            }
            _ => {
                // Cut the last record: its write is lost (it was the last write,
                // of extent 19 % 7 = 5, generation 3 → 2).
                let last = offsets[offsets.len() - 2];
                bytes.truncate(last + 10);
                expected.insert(5, 2);
                last
            }
        };
        // Kept without trailing zeros: a journal's allocated space is zeros.
        let mut dropped = bytes[valid..].to_vec();
        while dropped.last() == Some(&0) {
            dropped.pop();
        }
        std::fs::write(&journal, &bytes).unwrap();
        let store = Store::open(dir.path(), config.clone()).unwrap();
        let report = store.recovery().unwrap();
        assert!(report.torn_tail_dropped, "{tear}");
        assert!(!report.clean_close, "{tear}");
        assert_eq!(report.dropped_bytes, dropped.len() as u64);
        // The dropped bytes are kept as evidence, in the file the report names.
        let evidence = dir.path().join(report.dropped_file.unwrap());
        assert_eq!(std::fs::read(evidence).unwrap(), dropped, "{tear}");
        check(&store, &expected);
        drop(store);
        // The tail was dropped for good: the next open finds a clean journal.
        let store = reopen(dir.path(), &config, &expected);
        assert!(!store.recovery().unwrap().torn_tail_dropped, "{tear}");
    }
}

/// The journal a reopen cut back tears again at the same offset: the second
/// tear's bytes go to a file of their own, and the first tear's evidence is
/// left as it was.
#[test]
fn a_second_tear_at_the_same_offset_keeps_both_tears_evidence() {
    // Defect: evidence named by journal and offset only; the second tear's
    // (shorter) bytes are written over the first's, which then holds a mix.
    let config = config(2, 64 << 20);
    let dir = tempfile::tempdir().unwrap();
    let model = populated(dir.path(), &config, 20);
    let journal = newest_journal(dir.path());
    let mut files = Vec::new();
    for (tear, len) in [(1u8, 300u32), (2, 100)] {
        // The closed journal without its close marker (as a crash before the
        // close left it), then the tear: bytes no frame starts with.
        let mut bytes = std::fs::read(&journal).unwrap();
        let valid = *frame_offsets(&bytes).last().unwrap();
        bytes.truncate(valid);
        let garbage: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8 ^ tear).collect();
        bytes.extend(&garbage);
        std::fs::write(&journal, &bytes).unwrap();
        let store = Store::open(dir.path(), config.clone()).unwrap();
        let report = store.recovery().unwrap();
        assert!(report.torn_tail_dropped, "tear {tear}");
        assert_eq!(newest_journal(dir.path()), journal, "no rotation between");
        files.push((report.dropped_file.unwrap(), valid, garbage));
        check(&store, &model);
        store.close().unwrap();
    }
    assert_eq!(files[0].1, files[1].1, "both tears at the same offset");
    assert_ne!(files[0].0, files[1].0, "two evidence files");
    for (file, _, garbage) in &files {
        let evidence = std::fs::read(dir.path().join(file)).unwrap();
        assert_eq!(&evidence, garbage, "{file} holds its own tear, whole");
    }
}

/// A checkpoint of more records than the checkpointer encodes between two
/// writes of its file (a megabyte, about 15 000 records) and than an open
/// reads at a time: every record comes back, each with its own value.
#[test]
fn a_checkpoint_written_and_read_in_chunks_holds_every_record() {
    // Defect: a chunk written at the wrong offset, the encoder's frames
    // renumbered at a chunk's end, or a record dropped where an open's read
    // ends; the checkpoint is then refused (FPRE022) or a value is missing.
    let dir = tempfile::tempdir().unwrap();
    let n: u64 = 40_000;
    let mut model = Model::new();
    {
        let store = Store::open(dir.path(), config(2, 1 << 40)).unwrap();
        for first in (0..n).step_by(2_000) {
            let mut batch = extentmeta::Batch::new();
            for id in first..first + 2_000 {
                batch.write(ExtentId(id), value(ExtentId(id), 1, len_of(id, 1)));
                model.insert(id, 1);
            }
            store.apply_batch(batch).unwrap();
        }
    }
    // The smallest bound: the next commit rotates, and the checkpoint holds
    // every record.
    let store = Store::open(dir.path(), config(2, 4096)).unwrap();
    let before = store.stats().checkpoints;
    put(&store, &mut model, n);
    // Bounded: the rotation's checkpoint ends (a failure would end it too,
    // and the checks below would find it).
    while store.stats().checkpoints == before || store.stats().checkpoint_pending {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let checkpoint = current_checkpoint(dir.path());
    let len = std::fs::metadata(&checkpoint).unwrap().len();
    assert!(len > 2 << 20, "{len} bytes: more than two chunks");
    drop(store);
    // The records come from the checkpoint: the journal that held them was
    // retired.
    let config = config(2, 4096);
    let store = reopen(dir.path(), &config, &model);
    let recovered = store.recovery().unwrap();
    assert_eq!(recovered.records, n + 1);
    assert!(recovered.replayed < 100, "{} replayed", recovered.replayed);
}

/// The real file system, except that journal files report a length no memory
/// holds (a sparse or damaged file, or a faulty file system).
#[derive(Debug)]
struct HugeJournals;

#[derive(Debug)]
struct HugeFile(std::sync::Arc<dyn FsFile>);

impl FsFile for HugeFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(1 << 62)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
}

impl Fs for HugeJournals {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        StdFs.create_dir_all(dir)
    }
    fn open(&self, path: &Path, create: bool) -> std::io::Result<std::sync::Arc<dyn FsFile>> {
        let file = StdFs.open(path, create)?;
        let journal = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("journal-"));
        Ok(if journal {
            std::sync::Arc::new(HugeFile(file))
        } else {
            file
        })
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        StdFs.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        StdFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        StdFs.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> std::io::Result<Option<Box<dyn std::any::Any + Send + Sync>>> {
        StdFs.lock(path)
    }
}

/// A journal whose length no memory holds fails the open with an I/O error
/// that names it: the process is not aborted (recovery reads a journal whole,
/// and its buffer is reserved before it is filled), nothing is reported as
/// corruption, and the store opens as before on an honest file system.
#[test]
fn a_journal_longer_than_memory_fails_the_open_instead_of_aborting() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = config(1, 1 << 20);
    let model = populated(dir, &cfg, 20);
    let before = files(dir);
    let err = Store::open_in(std::sync::Arc::new(HugeJournals), dir, cfg.clone())
        .expect_err("a journal of 2^62 bytes cannot be read whole");
    assert_eq!(err.code(), "FPRE009", "an I/O error, not corruption: {err}");
    let text = err.to_string();
    assert!(
        text.contains("journal-") && text.contains("do not fit in memory"),
        "{text}"
    );
    let mut after = files(dir);
    after.remove("LOCK");
    let mut before = before;
    before.remove("LOCK");
    assert_eq!(before, after, "the failed open changed no file");
    drop(reopen(dir, &cfg, &model));
}
