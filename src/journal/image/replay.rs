//! Recovery: the checkpoint, then every journal after it, replayed into the
//! durable image.

use super::super::frame::{FileKind, Scan, Tear, scan_after};
use super::{Entry, Image, RecordImage, Records, Recovered, Tail, files, load_checkpoint};
use crate::bytes::Bytes;
use crate::error::{Error, Result};

/// Applies one replayed entry to the image, keeping every inline entry's
/// record and data in `inline` for the write-back (`None`: nothing will be
/// written back), sorted once replay ends ([`by_extent_and_version`]).
fn apply(image: &mut Image, inline: Option<&mut Vec<(RecordImage, Bytes)>>, entry: &Entry) {
    image.apply(entry);
    if let (Entry::Inline(r, data), Some(inline)) = (entry, inline) {
        inline.push((*r, data.clone()));
    }
}

/// Every inline entry, by extent, then version (of equal versions, in replay
/// order). All of them, not only each extent's newest: the recovered record
/// may name an older one's bytes (a quarantine of a generation whose next
/// write's inline entry was journaled, and then lost the race or was never
/// acknowledged), and the write-back must find it (`Recovered::choose_redo`).
/// A list sorted once rather than a map kept while replaying: a tenth of the
/// store's records may be inline writes in the journal, and a map's nodes cost
/// twice the list's entries; replay held the whole list already.
fn by_extent_and_version(mut inline: Vec<(RecordImage, Bytes)>) -> Vec<(RecordImage, Bytes)> {
    // Stable: equal versions stay in replay order.
    inline.sort_by_key(|(r, _)| (r.extent.0, r.version));
    inline
}

/// Cuts a batch that the end of the valid frames left unfinished (its
/// `BatchBegin` names more records than follow it) off the scan, as part of the
/// torn tail: its group commit was never acknowledged, and the reopen then cuts
/// the journal before it, so later appends never follow half a batch (which a
/// later recovery would read as the batch's missing records). Returns whether it
/// cut.
fn cut_unfinished_batch(scan: &mut super::super::frame::Scan) -> bool {
    let Some(batch) = scan.batch else {
        return false;
    };
    let after = scan.offsets.len() - batch.begin - 1;
    if after >= batch.count as usize || batch.interrupted {
        return false;
    }
    let at = scan.offsets[batch.begin];
    scan.offsets.truncate(batch.begin);
    scan.batch = None;
    scan.valid_len = at;
    scan.torn = true;
    // The last write now ends at the cut; if it began there, the write before
    // it was synced before it was issued, and needs no rewrite.
    scan.last_mark = scan.last_mark.filter(|&mark| mark < at);
    true
}

/// [`recover_into`] a map, from a checkpoint read whole, under a pointer of
/// this build's format.
#[cfg(all(test, not(loom)))]
pub(crate) fn recover(
    number: u64,
    checkpoint: &[u8],
    journals: &[(u64, &[u8])],
    mutants: super::super::PlanMutants,
) -> Result<Recovered> {
    recover_marked(number, checkpoint, journals, true, mutants)
}

/// [`recover`], under a pointer that promises rotation markers (`marked`,
/// format 4) or not (format 3).
#[cfg(all(test, not(loom)))]
pub(crate) fn recover_marked(
    number: u64,
    checkpoint: &[u8],
    journals: &[(u64, &[u8])],
    marked: bool,
    mutants: super::super::PlanMutants,
) -> Result<Recovered> {
    let mut read =
        |offset: u64, buf: &mut [u8]| Ok(super::super::frame::read_from(checkpoint, offset, buf));
    let source = Checkpoint {
        read: &mut read,
        chunk: checkpoint.len(),
    };
    recover_into(
        number,
        source,
        journals,
        Records::default(),
        marked,
        mutants,
    )
}

/// Where recovery reads its checkpoint from (see
/// [`scan_checkpoint`](super::super::frame::scan_checkpoint)).
pub(crate) struct Checkpoint<'a> {
    /// Fills a buffer from an offset of the file; fewer bytes only at its end.
    pub(crate) read: &'a mut (dyn FnMut(u64, &mut [u8]) -> Result<usize> + Send),
    /// Bytes read at a time.
    pub(crate) chunk: usize,
}

/// The highest frame sequence number replay accepts (2^62: at a billion
/// frames a second, 146 years of appends).
const MAX_SEQ: u64 = 1 << 62;

/// Recovers the durable image from checkpoint `number` (read a chunk at a time)
/// and the journals numbered `number` or more (`(number, bytes)`, any order),
/// every record going into `records` as it is read (a table, for an open: see
/// [`Records`]).
///
/// # Errors
///
/// [`Error::CheckpointCorrupt`] for a checkpoint that is truncated or fails a check;
/// [`Error::JournalCorrupt`] for a bad region followed by a frame written after it
/// was durable, a bad frame in any journal but the newest, a missing journal in the
/// sequence, or a journal whose header disagrees with its name or the checkpoint;
/// [`Error::MissingCheckpoint`] for a missing or empty journal `number` (created
/// durably before the pointer named the checkpoint) or a missing successor of a
/// journal that ends with [`Entry::Rotated`]; [`Error::NewerFormat`] and
/// [`Error::OlderFormat`]; a record `records` refuses ([`Records::insert`]).
/// With `marked` (a format 4 pointer, [`MARKED_ROTATIONS`](super::super::MARKED_ROTATIONS)),
/// also [`Error::JournalCorrupt`] for a journal without its marker (and
/// numbered with a gap before its successor) when the newest journal holds
/// records or it is not the one before the newest: its end was cut.
pub(crate) fn recover_into(
    number: u64,
    checkpoint: Checkpoint<'_>,
    journals: &[(u64, &[u8])],
    records: Records,
    marked: bool,
    mutants: super::super::PlanMutants,
) -> Result<Recovered> {
    let name = files::checkpoint(number);
    let mut image = Image {
        records,
        ..Image::default()
    };
    let header = load_checkpoint(number, &name, checkpoint, &mut image)?;

    let mut sorted: Vec<(u64, &[u8])> = journals
        .iter()
        .copied()
        .filter(|(n, _)| *n >= number)
        .collect();
    sorted.sort_by_key(|(n, _)| *n);
    if sorted.first().is_none_or(|(n, _)| *n != number) && !mutants.missing_journal_as_empty {
        return Err(Error::MissingCheckpoint {
            file: files::journal(number),
        });
    }
    let mut recovered = Recovered {
        image,
        devices: header.devices,
        checkpoint: number,
        tail: Tail {
            number,
            valid_len: 0,
            torn: false,
            closed: false,
        },
        next_seq: 0,
        // Nothing replayed, cut or decided yet: as for a new store.
        ..Recovered::fresh(header.devices)
    };
    let mut scans = Vec::with_capacity(sorted.len());
    for (expected, (n, bytes)) in (number..=u64::MAX).zip(sorted) {
        if n != expected {
            return Err(Error::JournalCorrupt {
                file: files::journal(expected),
                offset: 0,
                reason: "a journal in the sequence is missing",
            });
        }
        let file = files::journal(n);
        let tear = if mutants.torn_as_corrupt {
            Tear::NoLaterFrame
        } else if mutants.stale_as_current {
            Tear::StaleAsCurrent
        } else if mutants.stale_head_as_current {
            Tear::StaleHeadAsCurrent
        } else {
            Tear::Unsynced
        };
        // A journal's start frame is numbered after every frame of the journal
        // before it: anything lower in its file is a recycled file's stale
        // frame (see `plan::checkpoint`), or a head an undone rename left
        // behind in the recycled file while the journal before went on.
        let floor = (scans.last()).filter(|_| !mutants.stale_head_as_current);
        let floor = floor.and_then(|(_, b, _, s): &(u64, &[u8], String, Scan)| {
            let last = s.offsets.len().checked_sub(1)?;
            s.entry(b, last).and_then(|(seq, _)| seq.checked_add(1))
        });
        let scanned = scan_after(bytes, &file, FileKind::Journal, tear, floor)?;
        // The checkpoint's journal lost its frames (see below): refused as
        // such before later journals are scanned without its sequence numbers.
        if n == number && scanned.offsets.is_empty() && !mutants.missing_journal_as_empty {
            return Err(Error::MissingCheckpoint { file });
        }
        scans.push((n, bytes, file, scanned));
    }
    // Rotation creates the next journal before the old one's last write (which
    // ends with the marker naming it), so the newest journal holding records may
    // be the one before a successor that is still empty. Only that journal may be
    // torn, and only the newest journal may lack a header.
    let newest_with_records = scans
        .iter()
        .rposition(|(_, _, _, s)| s.holds_records())
        .unwrap_or(0);
    let count = scans.len();
    // Which journals end with the marker naming their successor: that
    // successor's header and start frame were durable (written, synced, its
    // directory entry synced) before the marker was written, so a successor
    // without them was damaged, not torn.
    let rotated: Vec<bool> = (scans.iter())
        .map(|(_, bytes, _, s)| matches!(s.last_entry(bytes), Some(Entry::Rotated { .. })))
        .collect();
    // A clean close synced the devices before its marker: nothing to write
    // back, so no inline data is kept while replaying (a tenth of a large
    // store's records may be inline writes in its journal).
    let closed = (scans.last())
        .is_some_and(|(_, bytes, _, s)| matches!(s.last_entry(bytes), Some(Entry::Closed)));
    // Every inline entry otherwise; the newest of each extent is matched
    // against the recovered record once every journal is replayed.
    let mut inline: Option<Vec<(RecordImage, Bytes)>> = (!closed).then(Vec::new);
    // A rotation that stopped before its marker left the journal before the
    // newest without one while the newest holds no record yet; the reopen
    // appends it before anything goes there. Any other journal without its
    // marker that a later one follows was cut (only under a format 4 pointer:
    // an older build's reopen did not append it).
    let last_holds_records = (scans.last()).is_some_and(|(_, _, _, s)| s.holds_records());
    // Each journal's first sequence number. A journal whose last frame is
    // numbered just before its successor's first lost nothing at its end,
    // marker or not (a build before format 4 wrote a successor anew after a
    // stopped rotation numbered so); one cut back at a frame boundary always
    // leaves a gap (its successor was numbered after every frame it had).
    let first_seqs: Vec<Option<u64>> = (scans.iter())
        .map(|(_, bytes, _, s)| s.entry(bytes, 0).map(|(seq, _)| seq))
        .collect();
    // The sequence number of the marker the journal just replayed lacks, while
    // no later journal has a frame: appends go on after it.
    let mut marker_seq: Option<u64> = None;
    for (i, (n, bytes, file, scanned)) in scans.into_iter().enumerate() {
        let journal_corrupt = |offset, reason| Error::JournalCorrupt {
            file: file.clone(),
            offset,
            reason,
        };
        let is_last = i + 1 == count;
        // The checkpoint's own journal had a durable header and start frame
        // before the pointer named the checkpoint: without them, it was damaged,
        // not torn.
        let named = i > 0 && rotated[i - 1];
        if (n == number || named) && scanned.offsets.is_empty() && !mutants.missing_journal_as_empty
        {
            return Err(Error::MissingCheckpoint { file });
        }
        if scanned.header.is_none() && !is_last {
            return Err(journal_corrupt(0, "bad file header"));
        }
        if scanned.torn && i < newest_with_records {
            return Err(journal_corrupt(
                scanned.valid_len,
                "a bad frame in a journal that later journals followed",
            ));
        }
        if let Some(h) = scanned.header {
            if h.number != n {
                return Err(journal_corrupt(0, "the header names another journal"));
            }
            if h.devices != header.devices {
                return Err(journal_corrupt(0, "the header's device count differs"));
            }
        }
        let mut scanned = scanned;
        if !mutants.batch_not_atomic
            && cut_unfinished_batch(&mut scanned)
            && i < newest_with_records
        {
            return Err(journal_corrupt(
                scanned.valid_len,
                "a batch cut short in a journal that later journals followed",
            ));
        }
        // A batch's records held until the last of them (its count, the records
        // so far). One append holds a whole batch, so it never spans journals,
        // and `cut_unfinished_batch` leaves none unfinished at a journal's end.
        let mut batch: Option<(usize, Vec<Entry>)> = None;
        for (i, &at) in scanned.offsets.iter().enumerate() {
            // Decoded again: the scan checked every frame and keeps only where
            // it is (see `Scan`).
            let Some((seq, entry)) = scanned.entry(bytes, i) else {
                return Err(journal_corrupt(at, "a frame changed after it was read"));
            };
            if seq < recovered.next_seq {
                return Err(journal_corrupt(0, "sequence numbers go backwards"));
            }
            // A CRC is no proof against a crafted frame: a store numbers at
            // most one frame per append, and never reaches this bound, so
            // every `+ 1` on sequence numbers after replay stays in range.
            if seq > MAX_SEQ {
                return Err(journal_corrupt(at, "a sequence number no store reaches"));
            }
            marker_seq = None;
            recovered.next_seq = seq + 1;
            recovered.replayed += 1;
            match entry {
                Entry::BatchBegin { count } if !mutants.batch_not_atomic => {
                    if batch.is_some() {
                        return Err(journal_corrupt(0, "a batch begins inside a batch"));
                    }
                    // Would hold every later record back for good: no writer
                    // writes it, so only damage (or a crafted frame) does.
                    if count == 0 {
                        return Err(journal_corrupt(at, "a batch of no records"));
                    }
                    batch = Some((count as usize, Vec::new()));
                }
                e if e.record().is_none() && batch.is_some() => {
                    return Err(journal_corrupt(0, "a batch's records are interrupted"));
                }
                e if e.record().is_some() && batch.is_some() => {
                    let Some((count, held)) = batch.as_mut() else {
                        continue;
                    };
                    held.push(e);
                    if held.len() == *count {
                        for e in held.drain(..) {
                            apply(&mut recovered.image, inline.as_mut(), &e);
                        }
                        batch = None;
                    }
                }
                e => apply(&mut recovered.image, inline.as_mut(), &e),
            }
        }
        // `cut_unfinished_batch` cut a torn batch off the scan, and one append
        // never splits a batch across journals: records still held back here
        // would be dropped without a word.
        if batch.is_some() {
            return Err(journal_corrupt(
                scanned.valid_len,
                "a batch unfinished at the journal's end",
            ));
        }
        // After this journal's frames, `next_seq` is its last frame's number + 1.
        let ends_before_next = !scanned.offsets.is_empty()
            && first_seqs.get(i + 1).copied().flatten() == Some(recovered.next_seq);
        if !is_last && !rotated[i] && !ends_before_next {
            if marked && (i + 2 < count || last_holds_records) {
                return Err(journal_corrupt(
                    scanned.valid_len,
                    "a later journal holds records but this one does not end with the marker naming it: its end was cut",
                ));
            }
            if !scanned.offsets.is_empty() {
                marker_seq = Some(recovered.next_seq);
                (recovered.unmarked).push((n, scanned.valid_len, recovered.next_seq));
                if junk_after(bytes, scanned.valid_len) {
                    recovered.cut_back.push((n, scanned.valid_len));
                }
            }
        }
        if let Some(mark) = scanned.last_mark {
            let (from, to) = (mark as usize, scanned.valid_len as usize);
            if from < to {
                recovered
                    .last_writes
                    .push((n, mark, bytes[from..to].to_vec()));
            }
        }
        if scanned.torn {
            recovered.cut = Some((n, scanned.valid_len));
            recovered.dropped =
                bytes[scanned.valid_len as usize..scanned.dropped_end as usize].to_vec();
        }
        if is_last {
            let last = scanned.last_entry(bytes);
            if let Some(Entry::Rotated { next }) = last {
                return Err(Error::MissingCheckpoint {
                    file: files::journal(next),
                });
            }
            recovered.tail = Tail {
                number: n,
                // Without a frame it is written anew (see `Tail::valid_len`).
                valid_len: if scanned.offsets.is_empty() {
                    0
                } else {
                    scanned.valid_len
                },
                torn: scanned.torn,
                closed: matches!(last, Some(Entry::Closed)),
            };
            // A torn tail is cut already; one without a frame is written anew.
            if !scanned.torn && !scanned.offsets.is_empty() && junk_after(bytes, scanned.valid_len)
            {
                recovered.cut_back.push((n, scanned.valid_len));
            }
        }
    }
    // A successor without frames (a rotation stopped while creating it): the
    // reopen writes it anew, its start frame after the marker.
    if let Some(m) = marker_seq {
        recovered.next_seq = recovered.next_seq.max(m + 1);
    }
    recovered.image.records.refused()?;
    recovered.inline = by_extent_and_version(inline.unwrap_or_default());
    recovered.choose_redo();
    Ok(recovered)
}

/// Whether bytes other than zeros follow a journal's valid prefix of `len`
/// bytes: a recycled file's stale frames, or what a lost write left, which
/// recovery cannot tell apart once the write's first bytes read as the end
/// (its later sectors persisted, its first did not). A lost write's frames
/// carry the sequence numbers the next appends reuse, at the same offsets: a
/// later cut that kept only the first sector of such an append would join its
/// bytes to the old frame's rest, and a write never acknowledged could read
/// whole. So the reopen cuts those bytes off before it writes there
/// (`plan::reopen`), whatever they are. Closed cleanly or not: appends after a
/// clean close that a cut lost leave the close marker last.
fn junk_after(bytes: &[u8], len: u64) -> bool {
    (bytes.get(len as usize..)).is_some_and(|rest| rest.iter().any(|&b| b != 0))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::super::PlanMutants;
    use super::super::super::frame::{FileKind, HEADER_LEN, encode_frame, encode_header};
    use super::super::super::tests::put;
    use super::super::{Image, encode_checkpoint};
    use super::*;

    /// Journal 3 of a 3-device store holding `entries`, numbered from `first_seq`.
    fn journal(entries: &[Entry], first_seq: u64) -> Vec<u8> {
        let mut out = encode_header(FileKind::Journal, 3, 3).to_vec();
        for (seq, e) in (first_seq..=u64::MAX).zip(entries) {
            encode_frame(&mut out, seq, HEADER_LEN as u64, e);
        }
        out
    }

    fn recovered(j3: &[u8]) -> Result<Recovered> {
        let ckpt = encode_checkpoint(3, 3, &Image::default());
        recover(3, &ckpt, &[(3, j3)], PlanMutants::default())
    }

    /// Frames with valid checksums are still input: a crafted one must be
    /// refused as corruption, never panic on an overflow or drop records.
    #[test]
    fn crafted_frames_are_corruption_not_a_panic_or_a_silent_drop() {
        // The reference: the same records, sanely numbered and batched.
        let batch = [Entry::BatchBegin { count: 2 }, put(1, 1), put(2, 1)];
        let sane = recovered(&journal(&batch, 100)).expect("a sane journal");
        assert_eq!(sane.image.records.len(), 2);
        // A sequence number at the top of the range.
        let err = recovered(&journal(&[put(1, 1)], u64::MAX)).unwrap_err();
        assert_eq!(err.code(), "FPRE021", "{err}");
        // A batch of no records would hold every later record back.
        let empty = [Entry::BatchBegin { count: 0 }, put(1, 1), put(2, 1)];
        let err = recovered(&journal(&empty, 100)).unwrap_err();
        assert_eq!(err.code(), "FPRE021", "{err}");
    }
}
