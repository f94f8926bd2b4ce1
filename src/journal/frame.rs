//! File headers and record frames: encoding, and the scan that tells a torn tail
//! from corruption.
//!
//! ```text
//! header (32 B): magic "EXTMETA\0" | format u32 | kind u32 | number u64 | devices u16 | 0u16 | crc32c u32
//! frame:         length u32 | crc32c u32 | seq u64 | durable u64 | payload (length bytes) [| data]
//! ```
//!
//! A frame's CRC covers its length, sequence number, durable mark and payload, so a
//! frame whose length field was torn fails it too. All integers are little-endian.
//! An [`Entry::Inline`] frame is followed by its data (the record's
//! `location.length` bytes), which the record's own checksum covers: the frame
//! stays small, so the torn-tail scan's probe at every offset checks at most
//! [`MAX_PAYLOAD`] bytes whatever the data's size, and a frame whose data is torn
//! is a bad frame like any other.
//!
//! # Torn or corrupt
//!
//! `durable` is the length of the file that was known durable (its last successful
//! sync covered it) when the write carrying the frame was issued. The sectors of
//! one unsynced write may persist in any subset, so after a power cut a bad region
//! may be followed by valid frames of the same write, or of nothing later: those
//! frames all carry a mark at or before the bad region. A valid frame whose mark
//! lies past the start of a bad region proves that region had been synced before
//! that frame was written: the region changed after it was durable, which is
//! corruption. Any other bad region is the unsynced tail of the last write, and
//! recovery drops it (keeping the bytes as evidence, see `plan::reopen`). The mark
//! is stamped when the write is issued ([`encode_group`]), not when a record is
//! buffered: a frame buffered while an earlier sync was in flight and written
//! after it must carry that sync's result, or damage to the earlier write would
//! pass for a tear.
//!
//! # Stale frames
//!
//! A recycled journal file ([`scan_after`]) holds an older journal's frames
//! past the new one's end: valid, but numbered below the new journal's first
//! frame, since sequence numbers continue across journals. They end the journal
//! like a bad frame and are never counted as its own, so they prove nothing
//! either way. Every write ends with a zero length (`plan::END_LEN`): a clean
//! end reads one, a torn write a bad frame or frames of its own further on.
//! The format is unchanged: journals written before read the same.

mod codec;
mod stream;

use super::{Entry, FORMAT_VERSION};
use crate::bytes::Bytes;
use crate::error::{Error, Result};
use crate::record::checksum;
pub(crate) use codec::RECORD_FRAME;
use codec::{decode_entry, encode_entry, u32_at, u64_at};
#[cfg(any(test, feature = "sim"))]
pub(crate) use stream::read_from;
pub(crate) use stream::scan_checkpoint;

const MAGIC: [u8; 8] = *b"EXTMETA\0";
/// Bytes of a file header.
pub(crate) const HEADER_LEN: usize = 32;
/// Bytes of a frame before its payload.
pub(crate) const FRAME_HEAD: usize = 24;
/// How many format versions past this build's a header may name and be
/// refused as newer ([`Error::NewerFormat`]) when its CRC fails: a number past
/// them, in a file that may be torn, is a torn header's garbage.
pub(crate) const NEWER_FORMATS: u32 = 64;
/// The format of directories written before frames carried a durable mark.
const FORMAT_WITHOUT_MARKS: u32 = 1;
/// The largest payload a frame may carry (the largest entry, a record with a
/// full tag, is 77 bytes): bounds
/// the work of the torn-tail scan at every offset.
const MAX_PAYLOAD: usize = 256;

/// What a metadata file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// Journal records.
    Journal = 1,
    /// A checkpoint image.
    Checkpoint = 2,
}

/// A decoded file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) kind: FileKind,
    pub(crate) number: u64,
    pub(crate) devices: u16,
}

/// What a scan of one file found: where its valid frames are, not their
/// entries, which [`entry`](Scan::entry) decodes again from the file's bytes
/// (a journal of a million records decoded into a list was 136 MB beside the
/// 94 MB file, during an open that must stay close to the table's memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scan {
    /// The header, unless the file is a torn empty journal.
    pub(crate) header: Option<Header>,
    /// The byte offset of each valid frame, in order.
    pub(crate) offsets: Vec<u64>,
    /// Bytes of the valid prefix (header included).
    pub(crate) valid_len: u64,
    /// Whether bytes past the valid prefix were dropped as a torn tail.
    pub(crate) torn: bool,
    /// Where the torn tail's bytes end (see `Probe::dropped_end`); `valid_len`
    /// if not torn.
    pub(crate) dropped_end: u64,
    /// The durable mark of the last valid frame: where the last write that
    /// reached the valid prefix began.
    pub(crate) last_mark: Option<u64>,
    /// Whether any entry but the journal's start frame was valid.
    records: bool,
    /// The last batch begun: its frame's index, its count, and whether an
    /// entry that is not a record followed it.
    pub(crate) batch: Option<BatchTail>,
}

/// See [`Scan::batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchTail {
    pub(crate) begin: usize,
    pub(crate) count: u32,
    pub(crate) interrupted: bool,
}

impl Scan {
    /// Whether any entry but the journal's start frame is valid: whether anything
    /// was ever appended.
    pub(crate) fn holds_records(&self) -> bool {
        self.records
    }

    /// Valid frame `i` of `bytes` (the bytes scanned): its sequence number and
    /// entry. `None` only if the bytes changed since the scan.
    pub(crate) fn entry(&self, bytes: &[u8], i: usize) -> Option<(u64, Entry)> {
        let at = usize::try_from(*self.offsets.get(i)?).ok()?;
        decode_frame(bytes.get(at..)?).map(|(seq, entry, _)| (seq, entry))
    }

    /// The last valid entry, if any.
    pub(crate) fn last_entry(&self, bytes: &[u8]) -> Option<Entry> {
        let last = self.offsets.len().checked_sub(1)?;
        self.entry(bytes, last).map(|(_, e)| e)
    }

    /// Every valid entry of `bytes` (the bytes scanned), in order.
    pub(crate) fn entries(&self, bytes: &[u8]) -> Vec<(u64, Entry)> {
        (0..self.offsets.len())
            .filter_map(|i| self.entry(bytes, i))
            .collect()
    }
}

/// The header of a new file.
pub(crate) fn encode_header(kind: FileKind, number: u64, devices: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(kind as u32).to_le_bytes());
    h[16..24].copy_from_slice(&number.to_le_bytes());
    h[24..26].copy_from_slice(&devices.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends the frame of `entry` with sequence number `seq` and durable mark
/// `durable` (see the module docs) to `out`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, seq: u64, durable: u64, entry: &Entry) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEAD]);
    encode_entry(out, entry);
    let len = (out.len() - start - FRAME_HEAD) as u32;
    debug_assert!(
        len as usize <= MAX_PAYLOAD,
        "entry larger than a frame allows"
    );
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 8..start + 16].copy_from_slice(&seq.to_le_bytes());
    out[start + 16..start + 24].copy_from_slice(&durable.to_le_bytes());
    let crc = frame_crc(&out[start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    if let Entry::Inline(_, data) = entry {
        out.extend_from_slice(data);
    }
}

/// The bytes of one journal write: every `(seq, entry)` framed with the durable
/// mark `durable`, the file length the last successful sync covered when this
/// write is issued.
pub(crate) fn encode_group(durable: u64, entries: &[(u64, Entry)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_group_into(&mut out, durable, entries);
    out
}

/// [`encode_group`] appended to `out` (a buffer kept from an earlier group, so
/// that a group commit allocates nothing once its buffer is large enough).
pub(crate) fn encode_group_into(out: &mut Vec<u8>, durable: u64, entries: &[(u64, Entry)]) {
    let data: usize = (entries.iter())
        .map(|(_, e)| match e {
            Entry::Inline(_, data) => data.len(),
            _ => 0,
        })
        .sum();
    out.reserve(entries.len() * (FRAME_HEAD + 48) + data);
    for (seq, entry) in entries {
        encode_frame(out, *seq, durable, entry);
    }
}

fn frame_crc(frame: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&frame[0..4]), &frame[8..])
}

/// Which bad regions a scan may drop as a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tear {
    /// None: any bad frame is corruption (a checkpoint, synced before use).
    Never,
    /// A region no later frame's durable mark covers (see the module docs).
    Unsynced,
    /// A region no valid frame follows at all: the rule before durable marks,
    /// which refuses power cuts that persisted sectors out of order (a mutant).
    NoLaterFrame,
    /// As [`Unsynced`](Self::Unsynced), but a recycled journal's stale frames
    /// count as its own past a bad region (a mutant).
    StaleAsCurrent,
    /// As [`Unsynced`](Self::Unsynced), but a journal's first frame is its own
    /// whatever journal it names and however it is numbered, so a recycled
    /// file's old start frame passes for the new one (a mutant; the caller
    /// passes no floor).
    StaleHeadAsCurrent,
}

/// Scans a whole file; `tear` says which bad regions are a torn tail.
///
/// # Errors
///
/// [`Error::NewerFormat`] / [`Error::OlderFormat`] for a format this build does not
/// read; [`Error::JournalCorrupt`] / [`Error::CheckpointCorrupt`] for a bad header,
/// or a bad frame that `tear` does not allow.
pub(crate) fn scan(bytes: &[u8], file: &str, kind: FileKind, tear: Tear) -> Result<Scan> {
    scan_after(bytes, file, kind, tear, None)
}

/// [`scan`] of a journal that may be a recycled file (see `plan::checkpoint`):
/// frames numbered below `floor` (one past the last frame of the journal
/// before it, if known: a start frame is numbered after all of them), or below
/// the journal's own start frame, are an older journal's, stale bytes that end
/// this one and prove nothing about it. A header naming an older journal than
/// the file's name is a recycled file's old header: the new head never became
/// durable (then nothing was appended), or a write lost it (then the probe
/// finds frames of this journal past it: corruption).
pub(crate) fn scan_after(
    bytes: &[u8],
    file: &str,
    kind: FileKind,
    tear: Tear,
    floor: Option<u64>,
) -> Result<Scan> {
    let may_be_torn = tear != Tear::Never;
    let corrupt = |offset: u64, reason: &'static str| match kind {
        FileKind::Journal => Error::JournalCorrupt {
            file: file.to_string(),
            offset,
            reason,
        },
        FileKind::Checkpoint => Error::CheckpointCorrupt {
            file: file.to_string(),
            reason,
        },
    };
    let named = super::files::journal_number(file).filter(|_| kind == FileKind::Journal);
    let header = match decode_header(bytes, file)? {
        Some(h) if h.kind == kind && named.is_none_or(|n| h.number >= n) => h,
        // A header that never became durable: the file was being created (or a
        // recycled file's head rewritten) when the machine stopped, before
        // anything was appended to it (no frame after it was written once it
        // was durable).
        h if may_be_torn && h.is_none_or(|h| h.kind == kind) => {
            // A recycled file's old header (the only way a valid header names an
            // older journal) is its new head never written or lost; either way
            // the probe looks past it for frames of this journal, which only a
            // durable head precedes.
            let probe = probe(tear, bytes, 0, stale_below(tear, floor.unwrap_or(0)));
            if probe.written_after {
                return Err(corrupt(0, "bad file header"));
            }
            let torn = h.is_none() && bytes.iter().any(|&b| b != 0);
            return Ok(Scan {
                header: None,
                offsets: Vec::new(),
                valid_len: 0,
                torn,
                dropped_end: if torn { probe.dropped_end(bytes, 0) } else { 0 },
                last_mark: None,
                records: false,
                batch: None,
            });
        }
        Some(h) if h.kind != kind => {
            return Err(corrupt(0, "the header names another kind of file"));
        }
        _ => return Err(corrupt(0, "bad file header")),
    };
    let mut offsets = Vec::new();
    let mut at = HEADER_LEN;
    let mut last_seq: Option<u64> = None;
    let mut last_mark = None;
    let mut records = false;
    let mut batch: Option<BatchTail> = None;
    let mut first_seq: Option<u64> = None;
    // Bounded: each iteration consumes at least one frame head.
    while at < bytes.len() {
        let frame = check_frame(&bytes[at..]);
        // The lowest sequence number this journal's next frame may carry.
        let lowest = last_seq.map_or(floor.unwrap_or(0), |l| l.saturating_add(1));
        // Below the journal's first frame (or the floor), a frame is an older
        // journal's: stale (see above). One numbered between is a copy of an
        // earlier frame of this journal, which only damage makes. A recycled
        // file's first frame is its old start frame until the new head's is
        // written over it (a short write may have written the header alone).
        let stale = |seq: u64, entry: &Entry| {
            seq < first_seq.or(floor).unwrap_or(0)
                || last_seq.is_none()
                    && tear != Tear::StaleHeadAsCurrent
                    && matches!(entry, Entry::JournalStart { number } if *number != header.number)
        };
        match frame {
            Some((seq, entry, used))
                if !stale(seq, &entry)
                    && last_seq.is_none_or(|l: u64| l.checked_add(1) == Some(seq)) =>
            {
                records |= !matches!(entry, Entry::JournalStart { .. });
                match entry {
                    Entry::BatchBegin { count } => {
                        batch = Some(BatchTail {
                            begin: offsets.len(),
                            count,
                            interrupted: false,
                        });
                    }
                    e if e.record().is_none() => {
                        if let Some(b) = &mut batch {
                            b.interrupted = true;
                        }
                    }
                    _ => {}
                }
                offsets.push(at as u64);
                first_seq.get_or_insert(seq);
                last_seq = Some(seq);
                last_mark = Some(frame_durable(&bytes[at..]));
                at += used;
                continue;
            }
            Some((seq, entry, _)) if !stale(seq, &entry) || !may_be_torn => {
                return Err(corrupt(at as u64, "sequence numbers are not consecutive"));
            }
            _ => {}
        }
        // A bad frame, or a stale one: the journal ends here.
        if !may_be_torn {
            return Err(corrupt(at as u64, "bad frame"));
        }
        let end = Scan {
            header: Some(header),
            offsets,
            valid_len: at as u64,
            torn: false,
            dropped_end: at as u64,
            last_mark,
            records,
            batch,
        };
        // Space the writer allocated ahead of its appends (no frame starts
        // with a zero length).
        if bytes[at..].iter().all(|&b| b == 0) {
            return Ok(end);
        }
        let probe = probe(tear, bytes, at, stale_below(tear, lowest));
        if probe.written_after {
            return Err(corrupt(
                at as u64,
                "a bad frame is followed by a frame written after it was durable",
            ));
        }
        // Every write within allocated space ends with a zero length (see
        // `plan::group_commit`): past it lie zeros, or a recycled file's stale
        // bytes. A torn write shows a bad frame here, or left frames of its own
        // further on (its first sector lost, a later one kept).
        let terminated = bytes.len() - at >= 4 && u32_at(bytes, at) == 0;
        let torn = !terminated || probe.frames_end.is_some();
        return Ok(Scan {
            torn,
            dropped_end: if torn {
                probe.dropped_end(bytes, at)
            } else {
                at as u64
            },
            ..end
        });
    }
    Ok(Scan {
        header: Some(header),
        offsets,
        valid_len: bytes.len() as u64,
        torn: false,
        dropped_end: bytes.len() as u64,
        last_mark,
        records,
        batch,
    })
}

/// The header, `None` if it is short, has no magic or fails its CRC.
fn decode_header(bytes: &[u8], file: &str) -> Result<Option<Header>> {
    if bytes.len() < HEADER_LEN || bytes[0..8] != MAGIC {
        return Ok(None);
    }
    // The format is checked before the CRC: a newer format may lay out (and
    // checksum) its header differently, and must be reported as such. Unless
    // its CRC fails and the number is past any version a later build could
    // have written (`NEWER_FORMATS`): a head torn after its magic (an unsynced
    // sector's changed bytes garbled), or a flipped bit of a synced one, shows
    // any number there, and that is a bad header, not a newer build's.
    let format = u32_at(bytes, 8);
    let crc_ok = u32_at(bytes, 28) == crc32c::crc32c(&bytes[..28]);
    if format > FORMAT_VERSION + NEWER_FORMATS && !crc_ok {
        return Ok(None);
    }
    if format > FORMAT_VERSION {
        return Err(Error::NewerFormat {
            file: file.to_string(),
            found: format,
            supported: FORMAT_VERSION,
        });
    }
    if format == FORMAT_WITHOUT_MARKS && u32_at(bytes, 28) == crc32c::crc32c(&bytes[..28]) {
        return Err(Error::OlderFormat {
            file: file.to_string(),
            found: format,
            supported: FORMAT_VERSION,
        });
    }
    if u32_at(bytes, 28) != crc32c::crc32c(&bytes[..28]) || format == 0 {
        return Ok(None);
    }
    let kind = match u32_at(bytes, 12) {
        1 => FileKind::Journal,
        2 => FileKind::Checkpoint,
        _ => return Ok(None),
    };
    Ok(Some(Header {
        kind,
        number: u64_at(bytes, 16),
        devices: u16::from_le_bytes([bytes[24], bytes[25]]),
    }))
}

/// One frame at the start of `bytes`: `(seq, entry, bytes used)`.
fn decode_frame(bytes: &[u8]) -> Option<(u64, Entry, usize)> {
    let (seq, entry, used) = check_frame(bytes)?;
    let Entry::Inline(r, _) = entry else {
        return Some((seq, entry, used));
    };
    let data = Bytes::from(&bytes[used - r.location.length as usize..used]);
    Some((seq, Entry::Inline(r, data), used))
}

/// [`decode_frame`] without copying an inline frame's data (its entry holds
/// none): what the scans need, which keep only where frames are.
fn check_frame(bytes: &[u8]) -> Option<(u64, Entry, usize)> {
    if bytes.len() < FRAME_HEAD {
        return None;
    }
    let len = u32_at(bytes, 0) as usize;
    if len == 0 || len > MAX_PAYLOAD || bytes.len() < FRAME_HEAD + len {
        return None;
    }
    let frame = &bytes[..FRAME_HEAD + len];
    if u32_at(frame, 4) != frame_crc(frame) {
        return None;
    }
    let entry = decode_entry(&frame[FRAME_HEAD..])?;
    let seq = u64_at(frame, 8);
    let Entry::Inline(r, _) = entry else {
        return Some((seq, entry, FRAME_HEAD + len));
    };
    let data = bytes.get(FRAME_HEAD + len..FRAME_HEAD + len + r.location.length as usize)?;
    if checksum(r.extent, r.generation, data) != r.checksum {
        return None;
    }
    let used = FRAME_HEAD + len + data.len();
    Some((seq, Entry::Inline(r, Bytes::from(Vec::new())), used))
}

/// The lowest sequence number a frame of this journal may carry past a bad
/// region, by `tear`'s rule.
fn stale_below(tear: Tear, lowest: u64) -> u64 {
    if tear == Tear::StaleAsCurrent {
        0
    } else {
        lowest
    }
}

/// What [`probe`] found past a bad region.
struct Probe {
    /// A frame written after the region was durable: the region is corruption.
    written_after: bool,
    /// The end of the last frame of this journal found past the region (a
    /// torn write's frames, kept while an earlier sector of it was lost).
    frames_end: Option<usize>,
}

impl Probe {
    /// Nothing found.
    const NOTHING: Probe = Probe {
        written_after: false,
        frames_end: None,
    };

    /// Where the bytes a torn tail drops end, for the evidence: past the torn
    /// write's frames, or the page where it broke, without zeros after. A
    /// recycled file holds an older journal's bytes further on, which are not
    /// this journal's and would make every tear's evidence a journal long.
    fn dropped_end(&self, bytes: &[u8], at: usize) -> u64 {
        let page = (at / 4096 + 1) * 4096;
        let end = self.frames_end.unwrap_or(0).max(page).min(bytes.len());
        (bytes[at..end].iter())
            .rposition(|&b| b != 0)
            .map_or(at, |i| at + i + 1) as u64
    }
}

/// Looks past the bad region at `bad` for frames of this journal (numbered
/// `lowest` or later; lower ones are stale, see [`scan_after`]): whether one
/// makes the region corruption rather than a torn tail by `tear`'s rule, and
/// where they end. Under [`Tear::Unsynced`] that is a frame written after the
/// region was durable: its durable mark lies past `bad`. Bounded by the file
/// length: every offset is probed at most once, each probe checks at most
/// `MAX_PAYLOAD` bytes (and an inline frame's data), and a valid frame is
/// skipped whole.
fn probe(tear: Tear, bytes: &[u8], bad: usize, lowest: u64) -> Probe {
    let mut found = Probe::NOTHING;
    let mut at = bad + 1;
    while at < bytes.len() {
        match check_frame(&bytes[at..]) {
            Some((seq, _, used)) if seq >= lowest => {
                found.written_after = match tear {
                    Tear::NoLaterFrame => true,
                    _ => written_after(bytes, at, bad),
                };
                if found.written_after {
                    return found;
                }
                at += used;
                found.frames_end = Some(at);
            }
            // An older journal's frame in a recycled file, whole: nothing was
            // written over it since (it would fail its checks), so no frame of
            // this journal starts inside it. Skipped whole, the stale bytes
            // cost a check per frame, not per byte.
            Some((_, _, used)) => at += used,
            None => at += 1,
        }
    }
    found
}

/// Whether the valid frame at `at` (numbered `lowest` or later) was written
/// after the region at `bad` was durable: its mark lies past `bad`, and not
/// past the frame itself, since a write begins where the durable bytes end.
/// The second half turns away a frame inside a value's bytes (a copy of
/// journal bytes, or forged) whose mark names a place further on; it never
/// turns away a frame a write of this journal made. (Requiring more, such as
/// the write's first frame intact at the mark, would let damage across the
/// start of a write pass for a torn tail.)
fn written_after(bytes: &[u8], at: usize, bad: usize) -> bool {
    let mark = frame_durable(&bytes[at..]);
    mark > bad as u64 && mark <= at as u64
}

/// The durable mark of a frame that [`decode_frame`] accepted.
fn frame_durable(frame: &[u8]) -> u64 {
    u64_at(frame, 16)
}

/// The length of a journal [`plan::new_journal`](super::plan::new_journal) created: its header and its start
/// frame.
pub(crate) fn new_journal_len(number: u64, devices: u16, seq: u64) -> u64 {
    journal_head(number, devices, seq).len() as u64
}

pub(crate) fn journal_head(number: u64, devices: u16, seq: u64) -> Vec<u8> {
    let mut bytes = encode_header(FileKind::Journal, number, devices).to_vec();
    // Marked 0: nothing of the file is durable when it is created.
    bytes.extend_from_slice(&encode_group(0, &[(seq, Entry::JournalStart { number })]));
    bytes
}
