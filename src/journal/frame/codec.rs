//! The encoding of entries inside frames, and the little-endian readers the
//! scan shares.

use super::FRAME_HEAD;
use crate::bytes::Bytes;
use crate::journal::{Entry, RecordImage};
use crate::record::{ExtentId, Location, State, Tag};

const TAG_PUT: u8 = 1;
const TAG_BAD: u8 = 2;
const TAG_DEGRADED: u8 = 3;
const TAG_END: u8 = 4;
const TAG_ROTATED: u8 = 5;
const TAG_CLOSED: u8 = 6;
const TAG_JOURNAL_START: u8 = 7;
const TAG_PROPOSED: u8 = 8;
const TAG_INLINE: u8 = 9;
const TAG_BATCH_BEGIN: u8 = 10;
const TAG_UNSYNCED: u8 = 11;
const TAG_SYNCED: u8 = 12;

pub(super) fn encode_entry(out: &mut Vec<u8>, entry: &Entry) {
    match entry {
        Entry::Put(r) | Entry::Proposed(r) | Entry::Inline(r, _) | Entry::Unsynced(r) => {
            out.push(match entry {
                Entry::Put(_) => TAG_PUT,
                Entry::Proposed(_) => TAG_PROPOSED,
                Entry::Unsynced(_) => TAG_UNSYNCED,
                _ => TAG_INLINE,
            });
            out.extend_from_slice(&r.extent.0.to_le_bytes());
            out.extend_from_slice(&r.version.to_le_bytes());
            out.push(r.state as u8);
            out.extend_from_slice(&r.generation.to_le_bytes());
            encode_location(out, r.location);
            out.extend_from_slice(&r.checksum.to_le_bytes());
            // A user tag follows as its length and bytes; an untagged record
            // stays 43 bytes, as format 3 wrote it before tags.
            if !r.tag.is_empty() {
                out.push(r.tag.len() as u8);
                out.extend_from_slice(r.tag.as_bytes());
            }
        }
        Entry::Bad(location) => {
            out.push(TAG_BAD);
            encode_location(out, *location);
        }
        Entry::Degraded(device) => {
            out.push(TAG_DEGRADED);
            out.extend_from_slice(&device.to_le_bytes());
        }
        Entry::End { frames } => {
            out.push(TAG_END);
            out.extend_from_slice(&frames.to_le_bytes());
        }
        Entry::Rotated { next } => {
            out.push(TAG_ROTATED);
            out.extend_from_slice(&next.to_le_bytes());
        }
        Entry::BatchBegin { count } => {
            out.push(TAG_BATCH_BEGIN);
            out.extend_from_slice(&count.to_le_bytes());
        }
        Entry::Synced { extent, version } => {
            out.push(TAG_SYNCED);
            out.extend_from_slice(&extent.0.to_le_bytes());
            out.extend_from_slice(&version.to_le_bytes());
        }
        Entry::Closed => out.push(TAG_CLOSED),
        Entry::JournalStart { number } => {
            out.push(TAG_JOURNAL_START);
            out.extend_from_slice(&number.to_le_bytes());
        }
    }
}

fn encode_location(out: &mut Vec<u8>, l: Location) {
    out.extend_from_slice(&l.device.to_le_bytes());
    out.extend_from_slice(&l.offset.to_le_bytes());
    out.extend_from_slice(&l.length.to_le_bytes());
}

pub(super) fn decode_entry(p: &[u8]) -> Option<Entry> {
    let (&tag, rest) = p.split_first()?;
    let entry = match (tag, rest.len()) {
        (TAG_PUT, RECORD_LEN..) => Entry::Put(record_at(rest)?),
        (TAG_PROPOSED, RECORD_LEN..) => Entry::Proposed(record_at(rest)?),
        (TAG_UNSYNCED, RECORD_LEN..) => Entry::Unsynced(record_at(rest)?),
        (TAG_SYNCED, 16) => Entry::Synced {
            extent: ExtentId(u64_at(rest, 0)),
            version: u64_at(rest, 8),
        },
        // The data follows the frame: `decode_frame` reads it.
        (TAG_INLINE, RECORD_LEN..) => Entry::Inline(record_at(rest)?, Bytes::from(Vec::new())),
        (TAG_BAD, 14) => Entry::Bad(location_at(rest, 0)),
        (TAG_DEGRADED, 2) => Entry::Degraded(u16::from_le_bytes([rest[0], rest[1]])),
        (TAG_END, 8) => Entry::End {
            frames: u64_at(rest, 0),
        },
        (TAG_ROTATED, 8) => Entry::Rotated {
            next: u64_at(rest, 0),
        },
        (TAG_BATCH_BEGIN, 4) => Entry::BatchBegin {
            count: u32_at(rest, 0),
        },
        (TAG_CLOSED, 0) => Entry::Closed,
        (TAG_JOURNAL_START, 8) => Entry::JournalStart {
            number: u64_at(rest, 0),
        },
        _ => return None,
    };
    Some(entry)
}

/// Bytes of an untagged record's payload after its entry kind.
const RECORD_LEN: usize = 43;
/// The bytes of an untagged record's frame (a tag adds its length byte and
/// bytes): what a checkpoint's buffer is sized by.
pub(crate) const RECORD_FRAME: usize = FRAME_HEAD + 1 + RECORD_LEN;

/// The record in `rest`: exactly [`RECORD_LEN`] bytes, or those followed by a
/// user tag's length (1 to [`MAX_TAG_LEN`](crate::MAX_TAG_LEN)) and its bytes.
fn record_at(rest: &[u8]) -> Option<RecordImage> {
    let tag = match rest.get(RECORD_LEN..)? {
        [] => Tag::EMPTY,
        [len, bytes @ ..] if *len != 0 && usize::from(*len) == bytes.len() => {
            Tag::new(bytes).ok()?
        }
        _ => return None,
    };
    Some(RecordImage {
        extent: ExtentId(u64_at(rest, 0)),
        version: u64_at(rest, 8),
        state: match rest[16] {
            0 => State::Vacant,
            1 => State::Durable,
            3 => State::Quarantined,
            _ => return None,
        },
        generation: u64_at(rest, 17),
        location: location_at(rest, 25),
        checksum: u32_at(rest, 39),
        tag,
    })
}

fn location_at(b: &[u8], at: usize) -> Location {
    Location::new(
        u16::from_le_bytes([b[at], b[at + 1]]),
        u64_at(b, at + 2),
        u32_at(b, at + 10),
    )
}

pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

pub(super) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}
