//! A recycled journal: a retired journal's file written over by a later one
//! (`plan::checkpoint`), its stale frames behind the new ones.

use super::Entry;
use super::files;
use super::frame::{FileKind, HEADER_LEN, Tear, encode_group, journal_head, scan_after};
use super::plan::END_LEN;
use super::tests::put;
use proptest::prelude::*;

const SECTOR: usize = 512;

/// The file of journal 1 after `writes` group commits of `per_write` records,
/// each write ended by its zero length, as the writer leaves it: the stale
/// bytes a recycled journal starts from. Its records encode extent `id % 5`
/// and generation `1000 + id`, its sequence numbers start at 0.
fn retired(writes: u64, per_write: u64) -> Vec<u8> {
    let mut file = journal_head(1, 3, 0);
    let mut seq = 1;
    for _ in 0..writes {
        let entries: Vec<(u64, Entry)> = (0..per_write)
            .map(|i| {
                let id = seq + i;
                (id, put(id % 5, 1000 + id))
            })
            .collect();
        seq += per_write;
        let mark = file.len() as u64;
        file.extend_from_slice(&encode_group(mark, &entries));
    }
    file.resize(file.len() + END_LEN as usize, 0);
    file
}

/// Writes `bytes` at `at` of `file`, growing it if needed.
fn write_at(file: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    if file.len() < at + bytes.len() {
        file.resize(at + bytes.len(), 0);
    }
    file[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Journal 3 written over `file` as the writer writes it: its head (sequence
/// number `first`), then groups of `sizes` records (generations from 1), each
/// write ended by its zero length. Returns every write's offset and bytes, in
/// order, and the entries of each.
fn writes_of_journal_3(first: u64, sizes: &[u64]) -> Vec<(usize, Vec<u8>, Vec<Entry>)> {
    let mut head = journal_head(3, 3, first);
    let mut end = head.len();
    head.resize(end + END_LEN as usize, 0);
    let mut out = vec![(0, head, vec![Entry::JournalStart { number: 3 }])];
    let mut seq = first + 1;
    let mut generation = 0;
    for &n in sizes {
        let entries: Vec<(u64, Entry)> = (0..n)
            .map(|i| {
                generation += 1;
                (seq + i, put(i % 5, generation))
            })
            .collect();
        seq += n;
        let mut bytes = encode_group(end as u64, &entries);
        let frames = bytes.len();
        bytes.resize(frames + END_LEN as usize, 0);
        out.push((end, bytes, entries.into_iter().map(|(_, e)| e).collect()));
        end += frames;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every write but the last was synced; the sectors of the last persist in
    /// any subset (each new, left as the retired journal had it, or garbage).
    /// Recovery never reports corruption, keeps every synced write, reads no
    /// stale frame as the new journal's, and calls the journal torn only if the
    /// last write did not persist whole.
    #[test]
    fn a_recycled_journal_cut_anywhere_keeps_its_synced_writes_and_no_stale_frame(
        old_writes in 1u64..40,
        sizes in proptest::collection::vec(1u64..12, 0..6),
        fates in proptest::collection::vec(0u8..3, 16),
    ) {
        let mut file = retired(old_writes, 7);
        // Sequence numbers go on from the journals between: above every stale one.
        let first = 10_000;
        let writes = writes_of_journal_3(first, &sizes);
        let (last, synced) = writes.split_last().expect("the head at least");
        for (at, bytes, _) in synced {
            write_at(&mut file, *at, bytes);
        }
        let (at, bytes, _) = last;
        let mut whole = true;
        let mut fate = fates.iter().cycle();
        let mut sector = at / SECTOR * SECTOR;
        while sector < at + bytes.len() {
            let from = sector.max(*at);
            let to = (sector + SECTOR).min(at + bytes.len());
            let f = fate.next().copied().unwrap_or(0);
            whole &= f == 0;
            match f {
                0 => write_at(&mut file, from, &bytes[from - at..to - at]),
                1 => {}
                _ => {
                    let garbage: Vec<u8> = (from..to).map(|j| (j * 37 + 11) as u8).collect();
                    write_at(&mut file, from, &garbage);
                }
            }
            sector += SECTOR;
        }
        let s = scan_after(&file, &files::journal(3), FileKind::Journal, Tear::Unsynced, Some(first - 5))
            .expect("never corruption");
        let kept: Vec<(u64, Entry)> = s.entries(&file);
        let expected: Vec<Entry> = writes.iter().flat_map(|(_, _, e)| e.clone()).collect();
        let synced_frames: usize = synced.iter().map(|(_, _, e)| e.len()).sum();
        prop_assert!(kept.len() >= synced_frames, "{} < {}", kept.len(), synced_frames);
        for (i, (seq, entry)) in kept.iter().enumerate() {
            prop_assert_eq!(*seq, first + i as u64, "no stale frame");
            prop_assert_eq!(entry, &expected[i]);
        }
        if whole {
            prop_assert_eq!(kept.len(), expected.len());
            prop_assert!(!s.torn, "a write that persisted whole is no tear");
        }
        if !synced.is_empty() {
            prop_assert!(s.valid_len >= *at as u64);
        }
        prop_assert!(s.dropped_end >= s.valid_len);
        // At most the torn write and the rest of the page it broke in.
        prop_assert!(s.dropped_end - s.valid_len <= (bytes.len() + 4096) as u64,
            "the evidence is the torn write's, not the stale bytes'");
    }
}

/// A recycled file whose new head never persisted still carries the retired
/// journal's header: nothing was appended to the new journal.
#[test]
fn a_recycled_file_with_its_old_header_is_an_empty_journal() {
    let file = retired(20, 7);
    let s = scan_after(
        &file,
        &files::journal(3),
        FileKind::Journal,
        Tear::Unsynced,
        Some(500),
    )
    .expect("not corruption");
    assert_eq!(
        (s.header, s.offsets.len(), s.valid_len, s.torn),
        (None, 0, 0, false)
    );
    // Frames of the new journal past it were written once its head was
    // durable: the old header is then a lost write over it, not a cut.
    let mut lost = file.clone();
    for (at, bytes, _) in writes_of_journal_3(10_000, &[4, 4]).iter().skip(1) {
        write_at(&mut lost, *at, bytes);
    }
    let err = scan_after(
        &lost,
        &files::journal(3),
        FileKind::Journal,
        Tear::Unsynced,
        Some(500),
    )
    .unwrap_err();
    assert_eq!(err.code(), "FPRE021", "{err}");
}

/// Synced writes whose bytes changed are corruption in a recycled journal too:
/// a later synced write's frames are found past the damage.
#[test]
fn damage_to_a_synced_write_of_a_recycled_journal_is_corruption() {
    let mut file = retired(30, 7);
    for (at, bytes, _) in writes_of_journal_3(10_000, &[4, 4, 4]) {
        write_at(&mut file, at, &bytes);
    }
    let clean = scan_after(
        &file,
        &files::journal(3),
        FileKind::Journal,
        Tear::Unsynced,
        None,
    )
    .expect("clean");
    assert_eq!((clean.offsets.len(), clean.torn), (13, false));
    let second = usize::try_from(clean.offsets[5]).expect("small");
    for damage in [0u8, 0x5a] {
        let mut bad = file.clone();
        bad[second..second + 8].fill(damage);
        let err = scan_after(
            &bad,
            &files::journal(3),
            FileKind::Journal,
            Tear::Unsynced,
            None,
        )
        .unwrap_err();
        assert_eq!(err.code(), "FPRE021", "{err}");
    }
}

/// The mutant that takes stale frames for the journal's own past a bad region
/// calls an ordinary torn write in a recycled journal corruption.
#[test]
fn stale_frames_taken_for_current_ones_call_a_torn_write_corruption() {
    let mut file = retired(40, 7);
    let writes = writes_of_journal_3(10_000, &[3, 9]);
    let (synced, last) = writes.split_at(2);
    for (at, bytes, _) in synced {
        write_at(&mut file, *at, bytes);
    }
    // The torn write's first sector persisted, its second did not.
    let (at, bytes, _) = &last[0];
    let cut = (at / SECTOR + 1) * SECTOR;
    assert!(at + bytes.len() > cut, "the write spans sectors");
    write_at(&mut file, *at, &bytes[..cut - at]);
    let name = files::journal(3);
    let s = scan_after(&file, &name, FileKind::Journal, Tear::Unsynced, None).expect("torn");
    assert!(s.torn && s.valid_len > *at as u64 && s.valid_len < cut as u64);
    let err = scan_after(&file, &name, FileKind::Journal, Tear::StaleAsCurrent, None).unwrap_err();
    assert_eq!(err.code(), "FPRE021");
    assert!(HEADER_LEN < *at);
}

/// A switch's rename of the recycled file undone by a power cut (the rename
/// that recycled journal 1 kept) leaves `journal-recycled` holding a head of
/// journal 3 numbered 205, while journal 2 goes on past 205. Adopted again,
/// and cut before the new head was durable, the file names journal 3 and its
/// start frame journal 3: only its number, not above journal 2's last frame,
/// tells the stale head. Recovery writes journal 3 anew; the mutant without
/// that floor reads the stale head and refuses the directory.
#[test]
fn a_head_left_by_an_undone_rename_is_stale_below_the_journal_before() {
    use super::PlanMutants;
    use super::image::{Image, encode_checkpoint, recover};
    let ckpt = encode_checkpoint(2, 3, &Image::default());
    let mut j2 = journal_head(2, 3, 200);
    let entries: Vec<(u64, Entry)> = (201..=210).map(|seq| (seq, put(seq % 5, seq))).collect();
    let mark = j2.len() as u64;
    j2.extend_from_slice(&encode_group(mark, &entries));
    let mut j3 = retired(20, 7);
    write_at(&mut j3, 0, &journal_head(3, 3, 205));
    let journals: [(u64, &[u8]); 2] = [(2, &j2), (3, &j3)];
    let r = recover(2, &ckpt, &journals, PlanMutants::default()).expect("recovered");
    assert_eq!((r.tail.number, r.tail.valid_len), (3, 0), "written anew");
    assert_eq!(r.unmarked.len(), 1, "journal 2 gets its marker");
    assert!(r.next_seq >= 211);
    for id in 0..5 {
        let newest = 206 + (id + 4) % 5; // the last of 201..=210 with this id
        assert_eq!(r.image.records.get(id).expect("record").generation, newest);
    }
    let mutant = PlanMutants {
        stale_head_as_current: true,
        ..PlanMutants::default()
    };
    let err = recover(2, &ckpt, &journals, mutant).unwrap_err();
    assert_eq!(err.code(), "FPRE021", "{err}");
}

/// A head rewritten over a cut file and torn again can keep its magic while
/// the bytes after it are garbled: a format number no later build could have
/// written, under a failing CRC, is a torn header, not a newer format; a
/// plausible next version is still refused as newer.
#[test]
fn a_torn_head_with_its_magic_is_not_a_newer_format() {
    let mut head = journal_head(3, 3, 10_000);
    head[9..12].copy_from_slice(&[0xb4, 0xc6, 0xee]);
    let s = scan_after(
        &head,
        &files::journal(3),
        FileKind::Journal,
        Tear::Unsynced,
        None,
    )
    .expect("torn, not newer");
    assert_eq!((s.header, s.offsets.len(), s.torn), (None, 0, true));
    let mut newer = journal_head(3, 3, 10_000);
    newer[8..12].copy_from_slice(&(super::FORMAT_VERSION + 1).to_le_bytes());
    let err = scan_after(
        &newer,
        &files::journal(3),
        FileKind::Journal,
        Tear::Unsynced,
        None,
    )
    .unwrap_err();
    assert_eq!(err.code(), "FPRE024", "{err}");
}

/// An empty checkpoint 1, and journal 1 holding one synced write of two
/// records (extents 2 and 4, generation 1), without its ending zeros.
fn checkpoint_and_two_records() -> (Vec<u8>, Vec<u8>) {
    use super::image::{Image, encode_checkpoint};
    let ckpt = encode_checkpoint(1, 3, &Image::default());
    let mut j1 = journal_head(1, 3, 0);
    let start = j1.len() as u64;
    j1.extend_from_slice(&encode_group(start, &[(1, put(2, 1)), (2, put(4, 1))]));
    (ckpt, j1)
}

/// A lost write whose first bytes reverted to the zero length that ended the
/// write before it, while its later sectors persisted: recovery reads a clean
/// end there (the frame is unreadable), and the bytes past it are junk to it,
/// as a recycled file's stale frames are. The next write reuses the lost
/// write's sequence numbers at the same offset; if a later cut kept only that
/// write's first bytes, the old frame behind them would read whole and
/// consecutive, and a write never acknowledged would come back (the emulator's
/// full-disk sweep found this, 1 seed in 100 000). So the reopen cuts a
/// journal it appends to at its end, when bytes follow it, before anything
/// is appended.
#[test]
fn a_lost_writes_remains_past_a_clean_looking_end_are_cut_before_the_next_write() {
    use super::image::recover;
    use super::plan::{FsOp, PlanMutants, reopen};
    let (ckpt, mut j1) = checkpoint_and_two_records();
    let end = j1.len();
    j1.resize(end + END_LEN as usize, 0);
    // The lost write: extent 6, generation 50, never acknowledged. Its first
    // bytes read as the old zero length, its later ones persisted.
    let lost = encode_group(end as u64, &[(3, put(6, 50))]);
    write_at(&mut j1, end, &lost);
    j1[end..end + 4].fill(0);
    j1.resize(j1.len() + 64, 0);
    let r = recover(1, &ckpt, &[(1, &j1)], PlanMutants::default()).unwrap();
    assert_eq!(r.tail.valid_len, end as u64);
    assert!(r.image.records.get(6).is_none() && !r.tail.torn);
    let plan = reopen(&r, PlanMutants::default());
    assert_eq!((plan.len, plan.next_seq), (end as u64, 3));
    for op in &plan.ops {
        match op {
            FsOp::Write {
                file,
                offset,
                bytes,
            } if *file == files::journal(1) => {
                write_at(&mut j1, *offset as usize, bytes);
            }
            FsOp::Truncate { file, len } if *file == files::journal(1) => {
                j1.truncate(*len as usize);
            }
            _ => {}
        }
    }
    // The next write, numbered as the lost one and of its length, at its
    // offset; a cut keeps its first bytes only.
    let next = encode_group(end as u64, &[(3, put(8, 60))]);
    assert_eq!(next.len(), lost.len());
    write_at(&mut j1, end, &next[..4]);
    let r = recover(1, &ckpt, &[(1, &j1)], PlanMutants::default()).unwrap();
    assert!(
        r.image.records.get(6).is_none(),
        "the lost write came back: {:?}",
        r.image.records.get(6)
    );
    assert_eq!(r.tail.valid_len, end as u64);
}

/// A value's bytes past a journal's end (a recycled file's old inline data,
/// or a torn write's) may hold a well-formed frame: forged, or copied from
/// some journal. Taken for a frame written after the end was durable, it made
/// recovery refuse the store as corrupt. It counts only if its durable mark
/// lies between the end and the frame itself, as every write's frames do;
/// marks further on are turned away, marks within still count (the rule
/// cannot tell those from a real later write).
#[test]
fn a_frame_inside_a_value_past_the_end_counts_only_with_a_mark_behind_it() {
    use super::image::recover;
    use super::plan::PlanMutants;
    let (ckpt, mut j1) = checkpoint_and_two_records();
    let end = j1.len();
    j1.resize(end + END_LEN as usize, 0);
    // Old bytes: a value's data, its frame head gone.
    j1.resize(end + 100, 0xA5);
    let at = end + 100;
    for (mark, refused) in [
        (u64::MAX, false),
        (at as u64 + 1, false),
        (end as u64 + 50, true),
        (at as u64, true),
    ] {
        let mut file = j1.clone();
        file.extend_from_slice(&encode_group(mark, &[(1 << 40, Entry::Closed)]));
        file.resize(file.len() + 64, 0x5A);
        let r = recover(1, &ckpt, &[(1, &file)], PlanMutants::default());
        match r {
            Ok(r) => {
                assert!(!refused, "mark {mark}: recovered");
                assert_eq!(r.tail.valid_len, end as u64);
                assert!(r.image.records.get(2).is_some() && r.image.records.get(4).is_some());
            }
            Err(e) => {
                assert!(refused, "mark {mark}: {e}");
                assert_eq!(e.code(), "FPRE021", "{e}");
            }
        }
    }
}

/// Damage across the start of a later write, whose frames past the damage
/// survive: those frames name a mark past the damage, so it is corruption,
/// never a torn tail that would drop synced writes (the first frame of that
/// write, at its mark, is among the damaged bytes).
#[test]
fn damage_across_the_start_of_a_later_write_is_corruption() {
    use super::image::recover;
    use super::plan::PlanMutants;
    let (ckpt, mut j1) = checkpoint_and_two_records();
    let w2 = j1.len();
    let entries: Vec<(u64, Entry)> = (3..8).map(|s| (s, put(s, 2))).collect();
    j1.extend_from_slice(&encode_group(w2 as u64, &entries));
    j1.resize(j1.len() + END_LEN as usize, 0);
    // The end of the first write and the start of the second go bad.
    for b in &mut j1[w2 - 20..w2 + 30] {
        *b ^= 0x5A;
    }
    let err = recover(1, &ckpt, &[(1, &j1)], PlanMutants::default()).unwrap_err();
    assert_eq!(err.code(), "FPRE021", "{err}");
}

/// An inline write of generation 1, then the next write's inline entry
/// (generation 2), then a quarantine of generation 1 at the same version as
/// that entry, replayed after it: the record recovered is the quarantined
/// generation 1, whose bytes only the older entry holds. The write-back must
/// take them from there: the device never had them durably, and once a
/// checkpoint retired the journal they would be gone (the emulator's
/// full-disk sweep, 1 seed in 100 000).
#[test]
fn the_write_back_takes_the_inline_entry_the_record_names_not_the_newest() {
    use super::RecordImage;
    use super::image::{Image, encode_checkpoint, recover};
    use super::plan::PlanMutants;
    use crate::bytes::Bytes;
    use crate::record::{ExtentId, Location, State, Tag, checksum};
    let inline = |generation: u64, version: u64, location: Location| {
        let data = vec![generation as u8; location.length as usize];
        let r = RecordImage {
            extent: ExtentId(6),
            version,
            state: State::Durable,
            generation,
            location,
            checksum: checksum(ExtentId(6), generation, &data),
            tag: Tag::EMPTY,
        };
        (r, Entry::Inline(r, Bytes::from(data)))
    };
    let (first, first_entry) = inline(1, 4, Location::new(1, 1024, 143));
    let (_, second_entry) = inline(2, 8, Location::new(0, 3072, 134));
    let quarantined = RecordImage {
        state: State::Quarantined,
        version: 8,
        ..first
    };
    let ckpt = encode_checkpoint(1, 3, &Image::default());
    let mut j1 = journal_head(1, 3, 0);
    let start = j1.len() as u64;
    j1.extend_from_slice(&encode_group(
        start,
        &[
            (1, first_entry),
            (2, second_entry),
            (3, Entry::Put(quarantined)),
        ],
    ));
    j1.resize(j1.len() + END_LEN as usize, 0);
    let r = recover(1, &ckpt, &[(1, &j1)], PlanMutants::default()).unwrap();
    assert_eq!(r.image.records.get(6), Some(quarantined));
    assert_eq!(
        r.redo,
        vec![(first.location, Bytes::from(vec![1u8; 143]))],
        "generation 1's bytes are written back"
    );
}
