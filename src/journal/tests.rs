//! Framing, torn-tail and corruption detection, checkpoint and pointer round trips.

use super::frame::{FileKind, HEADER_LEN, encode_frame, encode_header, scan};
use super::image::{Image, encode_checkpoint, recover};
use super::{Entry, FORMAT_VERSION, RecordImage, decode_pointer, encode_pointer, files};
use crate::error::Error;
use crate::record::{ExtentId, Location, State};
use proptest::prelude::*;

/// A record whose every field encodes its extent and generation.
fn put(id: u64, generation: u64) -> Entry {
    Entry::Put(RecordImage {
        extent: ExtentId(id),
        version: 2 * generation,
        state: State::Durable,
        generation,
        location: Location::new((id % 3) as u16, id * 4096 + generation, 100 + id as u32),
        checksum: (id * 1_000 + generation) as u32,
    })
}

fn journal(number: u64, entries: &[Entry], first_seq: u64) -> Vec<u8> {
    let mut out = encode_header(FileKind::Journal, number, 3).to_vec();
    for (i, e) in entries.iter().enumerate() {
        encode_frame(&mut out, first_seq + i as u64, e);
    }
    out
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
    ];
    let bytes = journal(5, &all, 40);
    let s = scan(&bytes, "j", FileKind::Journal, false).unwrap();
    let got: Vec<Entry> = s.entries.iter().map(|(_, e)| *e).collect();
    assert_eq!(got, all);
    assert_eq!(s.entries[0].0, 40);
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
        let s = scan(&bytes[..cut], "j", FileKind::Journal, true).unwrap();
        let got: Vec<Entry> = s.entries.iter().map(|(_, e)| *e).collect();
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
        let s = scan(&bytes, "j", FileKind::Journal, true).unwrap();
        prop_assert_eq!(s.entries.len() as u64, n);
        prop_assert_eq!(s.valid_len, valid as u64);
    }

    /// A damaged frame followed by valid frames is corruption (FPRE021), in every
    /// frame position and for every byte of it.
    #[test]
    fn a_bad_frame_followed_by_valid_ones_is_corruption(n in 3u64..12, victim in 0u64..10, byte in 0usize..60, flip in 1u8..=255) {
        let all = entries(n);
        let bytes = journal(1, &all, 0);
        let frame_len = (bytes.len() - HEADER_LEN) / n as usize;
        let victim = victim % (n - 1); // not the last frame
        let at = HEADER_LEN + victim as usize * frame_len + byte % frame_len;
        let mut damaged = bytes.clone();
        damaged[at] ^= flip;
        let err = scan(&damaged, "j", FileKind::Journal, true).unwrap_err();
        prop_assert_eq!(err.code(), "FPRE021");
    }
}

#[test]
fn damage_in_an_older_journal_is_corruption_even_at_its_tail() {
    let mut bytes = journal(1, &entries(3), 0);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    assert_eq!(
        scan(&bytes, "j", FileKind::Journal, false)
            .unwrap_err()
            .code(),
        "FPRE021"
    );
}

#[test]
fn a_newer_format_is_refused_with_its_own_code() {
    let mut bytes = journal(1, &entries(2), 0);
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = scan(&bytes, "j", FileKind::Journal, true).unwrap_err();
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
    // threads may append) an older record of it that must not win.
    let j3 = journal(3, &[put(1, 20), put(1, 19), put(50, 1)], 100);
    let j4 = journal(4, &[put(2, 30)], 103);
    let r = recover(3, &ckpt, &[(4, &j4), (3, &j3), (2, b"ignored: older")]).unwrap();
    assert_eq!(r.image.records[&1].generation, 20);
    assert_eq!(r.image.records[&2].generation, 30);
    assert_eq!(r.image.records[&50].generation, 1);
    assert_eq!(r.image.records.len(), image.records.len() + 1);
    assert!(r.image.bad.contains(&Location::new(1, 4096, 10)));
    assert_eq!((r.next_seq, r.replayed, r.devices), (104, 4, 3));
    // Recovering twice gives the same state.
    assert_eq!(
        recover(3, &ckpt, &[(3, &j3), (4, &j4)]).unwrap().image,
        r.image
    );
}

#[test]
fn a_truncated_checkpoint_is_refused() {
    let ckpt = encode_checkpoint(1, 3, &image_of(5));
    for cut in [ckpt.len() - 1, ckpt.len() - 25, HEADER_LEN + 3, 10] {
        let err = recover(1, &ckpt[..cut], &[]).unwrap_err();
        assert_eq!(err.code(), "FPRE022", "cut at {cut}: {err}");
    }
    assert!(recover(1, &ckpt, &[]).is_ok());
}

#[test]
fn a_missing_journal_in_the_middle_is_corruption() {
    let ckpt = encode_checkpoint(1, 3, &Image::default());
    let j1 = journal(1, &entries(2), 0);
    let j3 = journal(3, &entries(2), 2);
    let err = recover(1, &ckpt, &[(1, &j1), (3, &j3)]).unwrap_err();
    assert!(matches!(&err, Error::JournalCorrupt { file, .. } if *file == files::journal(2)));
}

#[test]
fn file_names_round_trip() {
    assert_eq!(files::journal_number(&files::journal(42)), Some(42));
    assert_eq!(files::checkpoint_number(&files::checkpoint(7)), Some(7));
    assert_eq!(files::journal_number("journal-12"), None);
    assert_eq!(files::checkpoint_number(&files::journal(7)), None);
}
