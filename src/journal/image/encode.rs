//! Checkpoint encoding: one buffer for a whole image (the emulator, backups,
//! a new store), or frames drained to a file a chunk at a time as a store's
//! checkpointer reads them from its table ([`CheckpointEncoder`]).

use super::Image;
use crate::journal::Entry;
use crate::journal::frame::{FileKind, HEADER_LEN, RECORD_FRAME, encode_frame, encode_header};

/// A checkpoint's frames, in order: the header, then every entry
/// [`push`](Self::push) is given (records, then bad locations, then degraded
/// devices), then the end frame counting them ([`finish`](Self::finish)).
#[derive(Debug)]
pub(crate) struct CheckpointEncoder {
    out: Vec<u8>,
    seq: u64,
}

impl CheckpointEncoder {
    /// Checkpoint `number` of a store of `devices`, its buffer sized for
    /// `capacity` bytes.
    pub(crate) fn new(number: u64, devices: u16, capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity.max(HEADER_LEN));
        out.extend_from_slice(&encode_header(FileKind::Checkpoint, number, devices));
        CheckpointEncoder { out, seq: 0 }
    }

    /// Appends `entry`'s frame.
    pub(crate) fn push(&mut self, entry: &Entry) {
        encode_frame(&mut self.out, self.seq, 0, entry);
        self.seq += 1;
    }

    /// Appends the end frame: the checkpoint is complete.
    pub(crate) fn finish(&mut self) {
        encode_frame(&mut self.out, self.seq, 0, &Entry::End { frames: self.seq });
    }

    /// The bytes encoded and not yet taken.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.out
    }

    /// Forgets the bytes encoded so far (written out); the frames go on.
    pub(crate) fn taken(&mut self) {
        self.out.clear();
    }

    /// The whole checkpoint, once [`finish`](Self::finish)ed, if nothing was taken.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

/// A checkpoint file: header, one frame per record, bad location and degraded
/// device, then the end frame counting them.
pub(crate) fn encode_checkpoint(number: u64, devices: u16, image: &Image) -> Vec<u8> {
    let frames = image.records.len() + image.bad.len() + image.degraded.len();
    // Sized for every frame: growing a buffer of a checkpoint of millions of
    // records doubles it, copying it once and reserving twice its size.
    let tags: usize = (image.records.iter())
        .filter(|r| !r.tag.is_empty())
        .map(|r| 1 + r.tag.len())
        .sum();
    let capacity = HEADER_LEN + (frames + 1) * RECORD_FRAME + tags;
    let mut encoder = CheckpointEncoder::new(number, devices, capacity);
    for entry in image_entries(image) {
        encoder.push(&entry);
    }
    encoder.finish();
    encoder.into_bytes()
}

/// `image`'s checkpoint entries, in the order a checkpoint holds them.
pub(crate) fn image_entries(image: &Image) -> impl Iterator<Item = Entry> + '_ {
    (image.records.iter())
        .map(|r| match image.proposed.contains(&r.extent.0) {
            true => Entry::Proposed(r),
            false => Entry::Put(r),
        })
        .chain(image.bad.iter().map(|l| Entry::Bad(*l)))
        .chain(image.degraded.iter().map(|d| Entry::Degraded(*d)))
}
