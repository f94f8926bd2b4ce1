//! Framing, torn-tail and corruption detection, checkpoint and pointer round trips.

use super::frame::{FileKind, HEADER_LEN, Tear, encode_frame, encode_group, encode_header, scan};
use super::image::{Image, encode_checkpoint, recover, recover_marked};
use super::plan::{FsOp, PlanMutants};
use super::{Entry, FORMAT_VERSION, RecordImage, decode_pointer, encode_pointer, files};
use crate::error::Error;
use crate::record::{ExtentId, Location, State};
use proptest::prelude::*;

/// A record whose every field encodes its extent and generation (the writer's
/// tests use it too); odd extents carry a tag of a length that varies with both,
/// even ones none, so every test round-trips both encodings.
pub(super) fn put(id: u64, generation: u64) -> Entry {
    let text = format!(
        "e{id}g{generation}:{}",
        "t".repeat((id + generation) as usize % 20)
    );
    let tag = match id % 2 {
        1 => crate::record::Tag::new(text.as_bytes()).expect("at most 32 bytes"),
        _ => crate::record::Tag::EMPTY,
    };
    Entry::Put(RecordImage {
        extent: ExtentId(id),
        version: 2 * generation,
        state: State::Durable,
        generation,
        location: Location::new((id % 3) as u16, id * 4096 + generation, 100 + id as u32),
        checksum: (id * 1_000 + generation) as u32,
        tag,
    })
}

/// A journal written as one group commit (no start frame: see `started`).
fn journal(number: u64, entries: &[Entry], first_seq: u64) -> Vec<u8> {
    let mut out = encode_header(FileKind::Journal, number, 3).to_vec();
    for (i, e) in entries.iter().enumerate() {
        encode_frame(&mut out, first_seq + i as u64, HEADER_LEN as u64, e);
    }
    out
}

/// A journal written as the given groups, each a write issued after the previous
/// one's sync (its frames marked with the length durable then); returns the bytes
/// and where each group starts.
fn journal_of_groups(groups: &[Vec<Entry>]) -> (Vec<u8>, Vec<usize>) {
    let mut out = encode_header(FileKind::Journal, 1, 3).to_vec();
    let mut starts = Vec::new();
    let mut seq = 0;
    for group in groups {
        starts.push(out.len());
        let numbered: Vec<(u64, Entry)> = group
            .iter()
            .map(|e| {
                seq += 1;
                (seq - 1, e.clone())
            })
            .collect();
        out.extend_from_slice(&encode_group(out.len() as u64, &numbered));
    }
    (out, starts)
}

fn groups(sizes: &[u64]) -> Vec<Vec<Entry>> {
    let mut generation = 0;
    sizes
        .iter()
        .map(|&n| {
            (0..n)
                .map(|i| {
                    generation += 1;
                    put(i % 5, generation)
                })
                .collect()
        })
        .collect()
}

fn entries(n: u64) -> Vec<Entry> {
    (0..n).map(|i| put(i % 7, i + 1)).collect()
}

#[test]
fn frames_round_trip_every_entry_kind() {
    let all = vec![
        put(9, 4),
        Entry::Bad(Location::new(2, 8192, 77)),
        Entry::Degraded(65_000),
        Entry::End { frames: 3 },
        Entry::Rotated { next: 6 },
        Entry::Closed,
    ];
    let bytes = journal(5, &all, 40);
    let s = scan(&bytes, "j", FileKind::Journal, Tear::Never).unwrap();
    let entries = s.entries(&bytes);
    let got: Vec<Entry> = entries.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(got, all);
    assert_eq!(entries[0].0, 40);
    assert_eq!((s.valid_len, s.torn), (bytes.len() as u64, false));
}

proptest! {
    /// A journal cut anywhere (a crash during its last append) recovers a prefix of
    /// its entries and reports the tear; it is never called corrupt.
    #[test]
    fn a_cut_journal_is_a_torn_tail_never_corruption(n in 1u64..20, cut in 0usize..2000) {
        let all = entries(n);
        let bytes = journal(1, &all, 0);
        let cut = HEADER_LEN + cut % (bytes.len() - HEADER_LEN + 1);
        let s = scan(&bytes[..cut], "j", FileKind::Journal, Tear::Unsynced).unwrap();
        let got: Vec<Entry> = s.entries(&bytes[..cut]).into_iter().map(|(_, e)| e).collect();
        prop_assert_eq!(&got[..], &all[..got.len()]);
        prop_assert_eq!(s.torn, s.valid_len < cut as u64);
    }

    /// A torn last sector (garbage after the valid prefix) is dropped too.
    #[test]
    fn garbage_after_the_last_frame_is_a_torn_tail(n in 1u64..10, junk in proptest::collection::vec(any::<u8>(), 1..64)) {
        let all = entries(n);
        let mut bytes = journal(1, &all, 0);
        let valid = bytes.len();
        bytes.extend_from_slice(&junk);
        let s = scan(&bytes, "j", FileKind::Journal, Tear::Unsynced).unwrap();
        prop_assert_eq!(s.offsets.len() as u64, n);
        prop_assert_eq!(s.valid_len, valid as u64);
    }

    /// Damage anywhere in a write that a later write followed (so it had been
    /// synced) is corruption (FPRE021), for every byte of it.
    #[test]
    fn damage_before_a_later_write_is_corruption(sizes in proptest::collection::vec(1u64..6, 2..6), victim in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let (bytes, starts) = journal_of_groups(&groups(&sizes));
        // Any byte of any group but the last.
        let last_start = *starts.last().unwrap();
        let at = HEADER_LEN + victim.index(last_start - HEADER_LEN);
        let mut damaged = bytes.clone();
        damaged[at] ^= flip;
        let err = scan(&damaged, "j", FileKind::Journal, Tear::Unsynced).unwrap_err();
        prop_assert_eq!(err.code(), "FPRE021");
    }

    /// The sectors of the last, unsynced write persist in any subset (each one
    /// written, left as it was, or torn): recovery drops a torn tail and never
    /// reports corruption, and keeps every earlier (synced) write whole.
    #[test]
    fn any_subset_of_an_unsynced_writes_sectors_is_a_torn_tail(sizes in proptest::collection::vec(1u64..30, 1..5), fates in proptest::collection::vec(0u8..3, 12), cut in any::<prop::sample::Index>()) {
        let all = groups(&sizes);
        let (bytes, starts) = journal_of_groups(&all);
        let last_start = *starts.last().unwrap();
        // The file may also end anywhere in the last write (its size not yet
        // updated).
        let end = last_start + cut.index(bytes.len() - last_start + 1);
        let mut crashed = bytes[..end].to_vec();
        for (i, sector) in (last_start / 512..=end / 512).enumerate() {
            let from = (sector * 512).max(last_start);
            let to = ((sector + 1) * 512).min(end);
            match fates[i % fates.len()] {
                0 => {}
                1 => crashed[from..to].fill(0),
                _ => crashed[from..to].iter_mut().enumerate().for_each(|(j, b)| *b = (j * 37 + 11) as u8),
            }
        }
        let s = scan(&crashed, "j", FileKind::Journal, Tear::Unsynced).unwrap();
        let synced: usize = all[..all.len() - 1].iter().map(Vec::len).sum();
        prop_assert!(s.offsets.len() >= synced);
        let flat: Vec<Entry> = all.concat();
        let got: Vec<Entry> = s.entries(&crashed).into_iter().map(|(_, e)| e).collect();
        prop_assert_eq!(&got[..], &flat[..got.len()]);
        prop_assert!(s.valid_len >= last_start as u64);
    }
}

/// The old rule ("a bad frame followed by any valid frame is corruption") refused
/// this state, which a power cut produces: the second sector of one unsynced write
/// persisted, the first did not.
#[test]
fn a_write_whose_first_sector_was_lost_and_second_kept_is_torn_not_corrupt() {
    let (bytes, starts) = journal_of_groups(&groups(&[3, 20]));
    let last = starts[1];
    let first_sector_end = (last / 512 + 1) * 512;
    assert!(
        bytes.len() > first_sector_end + 100,
        "the write spans sectors"
    );
    let mut crashed = bytes.clone();
    crashed[last..first_sector_end].fill(0);
    let s = scan(&crashed, "j", FileKind::Journal, Tear::Unsynced).unwrap();
    assert!(s.torn);
    assert_eq!((s.offsets.len(), s.valid_len), (3, last as u64));
}

#[test]
fn damage_in_an_older_journal_is_corruption_even_at_its_tail() {
    let mut bytes = journal(1, &entries(3), 0);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    assert_eq!(
        scan(&bytes, "j", FileKind::Journal, Tear::Never)
            .unwrap_err()
            .code(),
        "FPRE021"
    );
}

#[test]
fn a_newer_format_is_refused_with_its_own_code() {
    let mut bytes = journal(1, &entries(2), 0);
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = scan(&bytes, "j", FileKind::Journal, Tear::Unsynced).unwrap_err();
    assert!(matches!(err, Error::NewerFormat { found, .. } if found == FORMAT_VERSION + 1));
    let mut p = encode_pointer(4).to_vec();
    p[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert_eq!(decode_pointer(&p).unwrap_err().code(), "FPRE024");
}

#[test]
fn pointer_round_trips_and_refuses_damage() {
    assert_eq!(decode_pointer(&encode_pointer(77)).unwrap(), 77);
    let mut p = encode_pointer(77);
    p[13] ^= 1;
    assert_eq!(decode_pointer(&p).unwrap_err().code(), "FPRE022");
}

fn image_of(n: u64) -> Image {
    let mut image = Image::default();
    for e in entries(n) {
        image.apply(&e);
    }
    image.apply(&Entry::Bad(Location::new(1, 4096, 10)));
    image.apply(&Entry::Degraded(2));
    image
}

#[test]
fn checkpoint_then_journals_recover_the_newest_record_of_each_extent() {
    let image = image_of(10);
    let ckpt = encode_checkpoint(3, 3, &image);
    // Journal 3 rewrites extent 1 at generation 20, then (out of order, as two
    // threads may append) an older record of it that must not win; it ends with
    // the marker naming journal 4.
    let rotated = Entry::Rotated { next: 4 };
    let j3 = journal(3, &[put(1, 20), put(1, 19), put(50, 1), rotated], 100);
    let j4 = journal(4, &[put(2, 30)], 104);
    let r = recover(
        3,
        &ckpt,
        &[(4, &j4), (3, &j3), (2, b"ignored: older")],
        PlanMutants::default(),
    )
    .unwrap();
    assert_eq!(r.image.records.get(1).expect("record").generation, 20);
    assert_eq!(r.image.records.get(2).expect("record").generation, 30);
    assert_eq!(r.image.records.get(50).expect("record").generation, 1);
    assert_eq!(r.image.records.len(), image.records.len() + 1);
    assert!(r.image.bad.contains(&Location::new(1, 4096, 10)));
    assert_eq!((r.next_seq, r.replayed, r.devices), (105, 5, 3));
    // Recovering twice gives the same state.
    assert_eq!(
        recover(3, &ckpt, &[(3, &j3), (4, &j4)], PlanMutants::default())
            .unwrap()
            .image,
        r.image
    );
}

#[test]
fn a_truncated_checkpoint_is_refused() {
    let ckpt = encode_checkpoint(1, 3, &image_of(5));
    let j1 = journal(1, &[Entry::JournalStart { number: 1 }], 0);
    for cut in [ckpt.len() - 1, ckpt.len() - 25, HEADER_LEN + 3, 10] {
        let err = recover(1, &ckpt[..cut], &[(1, &j1)], PlanMutants::default()).unwrap_err();
        assert_eq!(err.code(), "FPRE022", "cut at {cut}: {err}");
    }
    assert!(recover(1, &ckpt, &[(1, &j1)], PlanMutants::default()).is_ok());
}

/// The journal a checkpoint starts existed with a durable header before the
/// pointer named the checkpoint: missing, empty or headerless, it was lost, and
/// recovery refuses rather than open an empty store over the device data.
#[test]
fn a_missing_or_empty_journal_of_the_checkpoint_is_refused() {
    let ckpt = encode_checkpoint(2, 3, &image_of(4));
    let header_only = journal(2, &[], 0);
    let started = journal(2, &[Entry::JournalStart { number: 2 }], 0);
    for journals in [
        vec![],
        vec![(2u64, &[][..])],
        vec![(2, &header_only[..10])],
        vec![(2, &header_only[..])],
        vec![(3, &started[..])],
    ] {
        let err = recover(2, &ckpt, &journals, PlanMutants::default()).unwrap_err();
        assert!(
            matches!(&err, Error::MissingCheckpoint { file } if *file == files::journal(2)),
            "{err}"
        );
    }
    assert!(recover(2, &ckpt, &[(2, &started)], PlanMutants::default()).is_ok());
    // The mutant opens them all as empty.
    let mutant = PlanMutants {
        missing_journal_as_empty: true,
        ..PlanMutants::default()
    };
    assert!(recover(2, &ckpt, &[(2, &header_only)], mutant).is_ok());
}

/// A journal that ends with the rotation marker names a successor that existed
/// durably before the marker was written: missing, it was lost.
#[test]
fn a_rotated_journal_without_its_successor_is_refused() {
    let ckpt = encode_checkpoint(1, 3, &Image::default());
    let j1 = journal(1, &[put(1, 1), Entry::Rotated { next: 2 }], 0);
    let err = recover(1, &ckpt, &[(1, &j1)], PlanMutants::default()).unwrap_err();
    assert!(matches!(&err, Error::MissingCheckpoint { file } if *file == files::journal(2)));
    // With its successor it recovers.
    let j2 = journal(2, &[put(1, 2)], 2);
    let r = recover(1, &ckpt, &[(1, &j1), (2, &j2)], PlanMutants::default()).unwrap();
    assert_eq!(r.image.records.get(1).expect("record").generation, 2);
    // A successor emptied, cut inside its header, or cut to its header alone
    // was damaged after it was durable (its header and start frame were synced
    // before the marker was written): refused, as if missing.
    for cut in [0, 5, 32] {
        let err = recover(
            1,
            &ckpt,
            &[(1, &j1), (2, &j2[..cut])],
            PlanMutants::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::MissingCheckpoint { file } if *file == files::journal(2)),
            "cut at {cut}: {err}"
        );
    }
}

/// After a clean close the last frame is the close marker, written after the
/// records before it were synced: damage to those records is corruption, never a
/// torn tail that undoes them.
#[test]
fn damage_to_the_last_record_of_a_closed_journal_is_corruption() {
    let (bytes, starts) = journal_of_groups(&[vec![put(1, 1), put(2, 1)], vec![Entry::Closed]]);
    let ckpt = encode_checkpoint(1, 3, &Image::default());
    let clean = recover(1, &ckpt, &[(1, &bytes)], PlanMutants::default()).unwrap();
    assert!(clean.tail.closed);
    for at in [starts[1] - 1, starts[1] - 30] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x10;
        let err = recover(1, &ckpt, &[(1, &damaged)], PlanMutants::default()).unwrap_err();
        assert_eq!(err.code(), "FPRE021", "byte {at}");
    }
}

#[test]
fn the_format_without_marks_is_refused_with_its_own_code() {
    let mut h = encode_header(FileKind::Journal, 1, 3);
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    let err = scan(&h, "j", FileKind::Journal, Tear::Unsynced).unwrap_err();
    assert_eq!(err.code(), "FPRE027");
    assert!(err.to_string().contains("new store"), "{err}");
}

#[test]
fn a_torn_tail_is_kept_as_evidence_for_the_reopen_plan() {
    let ckpt = encode_checkpoint(1, 3, &Image::default());
    let mut j1 = journal(1, &entries(3), 0);
    let valid = j1.len();
    j1.extend_from_slice(&[0xAB; 40]);
    let r = recover(1, &ckpt, &[(1, &j1)], PlanMutants::default()).unwrap();
    assert_eq!(r.dropped, vec![0xAB; 40]);
    let super::plan::Reopen {
        ops, number, len, ..
    } = super::plan::reopen(&r, PlanMutants::default());
    assert_eq!((number, len), (1, valid as u64));
    let evidence = files::dropped(1, valid as u64, &[0xAB; 40]);
    assert_eq!(files::dropped_number(&evidence), Some(1));
    // Another tear at the same offset keeps its own evidence.
    assert_ne!(evidence, files::dropped(1, valid as u64, &[0xAB; 39]));
    // Names written before the checksum was part of them are still evidence
    // (removed with their journal); names that only look alike are not.
    let j = files::journal(7);
    assert_eq!(files::dropped_number(&format!("{j}.dropped-96")), Some(7));
    for other in [
        "-x",
        "-0123456",
        "-0123456g",
        "-0123456A",
        "-01234567-1",
        "x-01234567",
    ] {
        let name = format!("{j}.dropped-96{other}");
        assert_eq!(files::dropped_number(&name), None, "{name}");
    }
    assert_eq!(files::dropped_number(&format!("{j}.dropped-+96")), None);
    // A reopen planned again from the same recovery (after a crash in the
    // first) writes the same file, not a second one.
    let again = super::plan::reopen(&r, PlanMutants::default()).ops;
    assert!(
        matches!(&again[0], super::plan::FsOp::Write { file, .. } if *file == evidence),
        "{again:?}"
    );
    let first = &ops[0];
    assert!(
        matches!(first, super::plan::FsOp::Write { file, bytes, .. } if *file == evidence && bytes[..] == [0xAB; 40][..]),
        "the evidence is written before the journal is cut: {ops:?}"
    );
    let cut = ops
        .iter()
        .position(|op| matches!(op, super::plan::FsOp::Truncate { .. }));
    let synced = ops
        .iter()
        .position(|op| matches!(op, super::plan::FsOp::SyncDir));
    assert!(synced < cut, "{ops:?}");
}

#[test]
fn a_missing_journal_in_the_middle_is_corruption() {
    let ckpt = encode_checkpoint(1, 3, &Image::default());
    let j1 = journal(1, &entries(2), 0);
    let j3 = journal(3, &entries(2), 2);
    let err = recover(1, &ckpt, &[(1, &j1), (3, &j3)], PlanMutants::default()).unwrap_err();
    assert!(matches!(&err, Error::JournalCorrupt { file, .. } if *file == files::journal(2)));
}

#[test]
fn file_names_round_trip() {
    assert_eq!(files::journal_number(&files::journal(42)), Some(42));
    assert_eq!(files::checkpoint_number(&files::checkpoint(7)), Some(7));
    assert_eq!(files::journal_number("journal-12"), None);
    assert_eq!(files::checkpoint_number(&files::journal(7)), None);
}

/// The reopen's write of `file` at `offset` and where it stands in the plan.
fn planned_write(ops: &[FsOp], file: &str, offset: u64) -> (usize, Vec<u8>) {
    ops.iter()
        .enumerate()
        .find_map(|(i, op)| match op {
            FsOp::Write {
                file: f,
                offset: o,
                bytes,
            } if f == file && *o == offset => Some((i, bytes.to_vec())),
            _ => None,
        })
        .expect("the plan writes there")
}

/// A rotation that stopped before its marker leaves journal 1 without one and
/// journal 2 with its start frame only. The reopen appends the marker, synced,
/// before anything goes to journal 2; from then on a journal 1 that lost its end
/// (the marker and its last records, cut at a frame boundary) while journal 2
/// holds records is refused as corrupt instead of recovered without them.
#[test]
fn a_journal_cut_back_to_a_frame_boundary_is_refused_once_a_later_one_holds_records() {
    let ckpt = encode_checkpoint(1, 3, &Image::default());
    let start = |n| Entry::JournalStart { number: n };
    let j1 = journal(1, &[start(1), put(1, 1), put(2, 1)], 0);
    // The rotation numbered its marker 3 and journal 2's start frame 4.
    let j2_started = journal(2, &[start(2)], 4);
    let r = recover(
        1,
        &ckpt,
        &[(1, &j1), (2, &j2_started)],
        PlanMutants::default(),
    )
    .unwrap();
    let end = j1.len() as u64;
    assert_eq!(r.unmarked, vec![(1, end, 3)]);
    let plan = super::plan::reopen(&r, PlanMutants::default());
    let (at, marker) = planned_write(&plan.ops, &files::journal(1), end);
    assert!(
        matches!(&plan.ops[at + 1], FsOp::Sync { file } if *file == files::journal(1)),
        "the marker is synced at once: {:?}",
        plan.ops
    );
    let mut marked = j1.clone();
    marked.extend_from_slice(&marker);
    // Journal 2 then holds records: recovered, nothing left to mark.
    let j2 = journal(2, &[start(2), put(1, 2)], 4);
    let r = recover(1, &ckpt, &[(1, &marked), (2, &j2)], PlanMutants::default()).unwrap();
    assert_eq!(r.image.records.get(1).expect("record").generation, 2);
    assert_eq!(r.image.records.get(2).expect("record").generation, 1);
    assert!(r.unmarked.is_empty());
    // Journal 1 cut back to a frame boundary: its marker and extent 2's record
    // are gone.
    let cut = journal(1, &[start(1), put(1, 1)], 0);
    for j1 in [&j1, &cut] {
        let err = recover(1, &ckpt, &[(1, j1), (2, &j2)], PlanMutants::default()).unwrap_err();
        assert!(
            matches!(&err, Error::JournalCorrupt { file, .. } if *file == files::journal(1)),
            "{err}"
        );
    }
    // A store last opened by a build before format 4 may hold a journal
    // without its marker before records (its reopen did not append one):
    // recovered, and the reopen appends the marker then.
    let r = recover_marked(
        1,
        &ckpt,
        &[(1, &cut), (2, &j2)],
        false,
        PlanMutants::default(),
    )
    .unwrap();
    assert_eq!(r.unmarked, vec![(1, cut.len() as u64, 2)]);
    let plan = super::plan::reopen(&r, PlanMutants::default());
    planned_write(&plan.ops, &files::journal(1), cut.len() as u64);
    // The mutant leaves it out.
    let mutant = PlanMutants {
        reopen_without_marker: true,
        ..PlanMutants::default()
    };
    let plan = super::plan::reopen(&r, mutant);
    let end = cut.len() as u64;
    assert!(!plan.ops.iter().any(|op| matches!(
        op,
        FsOp::Write { file, offset, .. } if *file == files::journal(1) && *offset == end
    )));
}

/// A successor whose start frame was torn (its header alone persisted) is
/// written anew, its start frame numbered after the marker, before the marker
/// names it.
#[test]
fn a_successor_without_its_start_frame_is_written_anew_before_the_marker() {
    let ckpt = encode_checkpoint(1, 3, &Image::default());
    let j1 = journal(1, &[Entry::JournalStart { number: 1 }, put(1, 1)], 0);
    let header_only = journal(2, &[], 0);
    let r = recover(
        1,
        &ckpt,
        &[(1, &j1), (2, &header_only)],
        PlanMutants::default(),
    )
    .unwrap();
    assert_eq!(r.tail.number, 2);
    assert_eq!(r.tail.valid_len, 0, "no frame: written anew");
    assert_eq!(r.unmarked, vec![(1, j1.len() as u64, 2)]);
    assert_eq!(r.next_seq, 3, "the marker's number stays free");
    let plan = super::plan::reopen(&r, PlanMutants::default());
    let (created, head) = planned_write(&plan.ops, &files::journal(2), 0);
    let (marked_at, marker) = planned_write(&plan.ops, &files::journal(1), j1.len() as u64);
    assert!(created < marked_at, "{:?}", plan.ops);
    assert_eq!(plan.next_seq, 4);
    let mut j1 = j1;
    j1.extend_from_slice(&marker);
    let mut j2 = head[..head.len() - super::plan::END_LEN as usize].to_vec(); // appends go over its end
    encode_frame(&mut j2, 4, HEADER_LEN as u64, &put(1, 2));
    let r = recover(1, &ckpt, &[(1, &j1), (2, &j2)], PlanMutants::default()).unwrap();
    assert_eq!(r.image.records.get(1).expect("record").generation, 2);
    assert!(r.unmarked.is_empty());
}

/// A journal whose last frame is numbered just before its successor's first
/// lost nothing at its end, marker or not (a build before format 4 wrote a
/// successor anew after a stopped rotation numbered so): recovered under a
/// format 4 pointer, nothing to mark. One frame fewer leaves a gap: cut.
#[test]
fn a_journal_numbered_just_before_its_successor_needs_no_marker() {
    let ckpt = encode_checkpoint(1, 3, &Image::default());
    let start = |n| Entry::JournalStart { number: n };
    let j1 = journal(1, &[start(1), put(1, 1), put(2, 1)], 0);
    let j2 = journal(2, &[start(2), put(1, 2)], 3);
    let r = recover(1, &ckpt, &[(1, &j1), (2, &j2)], PlanMutants::default()).unwrap();
    assert_eq!(r.image.records.get(1).expect("record").generation, 2);
    assert_eq!(r.image.records.get(2).expect("record").generation, 1);
    assert!(r.unmarked.is_empty());
    let cut = journal(1, &[start(1), put(1, 1)], 0);
    let err = recover(1, &ckpt, &[(1, &cut), (2, &j2)], PlanMutants::default()).unwrap_err();
    assert!(
        matches!(&err, Error::JournalCorrupt { file, .. } if *file == files::journal(1)),
        "{err}"
    );
}

/// A journal without its marker two journals before the newest was cut, even
/// while the newest holds only its start frame: only the journal just before
/// the newest can be the one a stopped rotation left unmarked.
#[test]
fn a_journal_without_its_marker_further_back_is_refused() {
    let ckpt = encode_checkpoint(1, 3, &Image::default());
    let start = |n| Entry::JournalStart { number: n };
    let j1 = journal(1, &[start(1), put(1, 1)], 0);
    let j2 = journal(2, &[start(2), put(2, 1), Entry::Rotated { next: 3 }], 4);
    let j3 = journal(3, &[start(3)], 7);
    let journals = [(1, &j1[..]), (2, &j2[..]), (3, &j3[..])];
    let err = recover(1, &ckpt, &journals, PlanMutants::default()).unwrap_err();
    assert!(
        matches!(&err, Error::JournalCorrupt { file, .. } if *file == files::journal(1)),
        "{err}"
    );
    // With its marker, all three recover.
    let marked = journal(1, &[start(1), put(1, 1), Entry::Rotated { next: 2 }], 0);
    let journals = [(1, &marked[..]), (2, &j2[..]), (3, &j3[..])];
    let r = recover(1, &ckpt, &journals, PlanMutants::default()).unwrap();
    assert_eq!(r.image.records.get(2).expect("record").generation, 1);
    assert!(r.unmarked.is_empty());
}
