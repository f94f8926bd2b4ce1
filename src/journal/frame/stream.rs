//! Reading a checkpoint in bounded chunks: an open of millions of records
//! never holds the whole file (68 bytes a record) beside the table it builds.

use super::{FRAME_HEAD, FileKind, HEADER_LEN, Header, MAX_PAYLOAD, decode_frame, decode_header};
use crate::error::{Error, Result};
use crate::journal::Entry;

/// The most bytes a checkpoint frame takes: no checkpoint entry carries data
/// after its frame.
const MAX_FRAME: usize = FRAME_HEAD + MAX_PAYLOAD;

/// Scans checkpoint `file` as [`scan`](super::scan) does with
/// [`Tear::Never`](super::Tear::Never), reading it `chunk` bytes at a time
/// (at least one frame's worth), passing the header to `head` before any
/// frame, then each frame's sequence number and entry to `each` in order. `read(offset, buf)` fills `buf` from `offset` and
/// returns how many bytes it read, fewer than `buf.len()` only at the file's
/// end. Returns the header.
///
/// Memory: one chunk plus one frame, whatever the file's length.
///
/// # Errors
///
/// [`Error::CheckpointCorrupt`] for a bad header or frame, a header of another
/// kind of file, sequence numbers that are not consecutive, or an entry a
/// checkpoint never holds (inline data); `read`'s, `head`'s and `each`'s errors.
pub(crate) fn scan_checkpoint(
    read: &mut dyn FnMut(u64, &mut [u8]) -> Result<usize>,
    file: &str,
    chunk: usize,
    head: impl FnOnce(&Header) -> Result<()>,
    mut each: impl FnMut(u64, Entry) -> Result<()>,
) -> Result<Header> {
    let corrupt = |reason| Error::CheckpointCorrupt {
        file: file.to_string(),
        reason,
    };
    let chunk = chunk.max(MAX_FRAME).max(HEADER_LEN);
    let mut buf = vec![0u8; chunk];
    let mut len = read(0, &mut buf)?;
    let mut eof = len < chunk;
    let mut offset = len as u64;
    let header = match decode_header(&buf[..len], file)? {
        Some(h) if h.kind == FileKind::Checkpoint => h,
        Some(_) => return Err(corrupt("the header names another kind of file")),
        None => return Err(corrupt("bad file header")),
    };
    head(&header)?;
    let mut at = HEADER_LEN;
    let mut last_seq: Option<u64> = None;
    // Bounded: each pass consumes a frame or reads a chunk; the file ends.
    loop {
        if len - at < MAX_FRAME && !eof {
            // Keep the partial frame, fill the rest of the buffer.
            buf.copy_within(at..len, 0);
            let kept = len - at;
            let n = read(offset, &mut buf[kept..])?;
            eof = n < chunk - kept;
            offset += n as u64;
            (len, at) = (kept + n, 0);
            continue;
        }
        if at == len {
            return Ok(header);
        }
        match decode_frame(&buf[at..len]) {
            Some((_, Entry::Inline(..), _)) => return Err(corrupt("inline data in a checkpoint")),
            // Numbered from 0, one by one, so that the end frame's count
            // (`frames == seq`) counts them; never past `u64::MAX`.
            Some((seq, entry, used))
                if last_seq.map_or(seq == 0, |l| l.checked_add(1) == Some(seq)) =>
            {
                last_seq = Some(seq);
                at += used;
                each(seq, entry)?;
            }
            Some(_) => return Err(corrupt("sequence numbers are not consecutive")),
            None => return Err(corrupt("bad frame")),
        }
    }
}

/// Fills `buf` from `offset` of `bytes` (a file in memory): the bytes copied,
/// fewer than `buf.len()` only where `bytes` end.
#[cfg(any(test, feature = "sim"))]
pub(crate) fn read_from(bytes: &[u8], offset: u64, buf: &mut [u8]) -> usize {
    let from = usize::try_from(offset).map_or(bytes.len(), |o| o.min(bytes.len()));
    let n = buf.len().min(bytes.len() - from);
    buf[..n].copy_from_slice(&bytes[from..from + n]);
    n
}

#[cfg(test)]
mod tests {
    use super::super::{FileKind, Tear, encode_frame, encode_header, scan};
    use super::*;
    use crate::journal::RecordImage;
    use crate::record::{ExtentId, Location, State, Tag};

    fn checkpoint(records: u64) -> Vec<u8> {
        let mut out = encode_header(FileKind::Checkpoint, 3, 2).to_vec();
        for i in 0..records {
            let r = RecordImage {
                extent: ExtentId(i),
                version: 2 * (i + 1),
                state: State::Durable,
                generation: i + 1,
                location: Location::new((i % 2) as u16, i * 512, 16),
                checksum: i as u32,
                tag: Tag::EMPTY,
            };
            encode_frame(&mut out, i, 0, &Entry::Put(r));
        }
        encode_frame(&mut out, records, 0, &Entry::End { frames: records });
        out
    }

    fn streamed(bytes: &[u8], chunk: usize) -> Result<(Header, Vec<(u64, Entry)>)> {
        let mut read = |offset: u64, buf: &mut [u8]| Ok(read_from(bytes, offset, buf));
        let mut entries = Vec::new();
        let header = scan_checkpoint(
            &mut read,
            "checkpoint-3",
            chunk,
            |_| Ok(()),
            |seq, e| {
                entries.push((seq, e));
                Ok(())
            },
        )?;
        Ok((header, entries))
    }

    #[test]
    fn chunks_of_any_size_read_what_a_whole_file_scan_reads() {
        // Defect: a frame cut by a chunk's end dropped, read twice or taken
        // for a bad frame.
        let bytes = checkpoint(50);
        let whole = scan(&bytes, "checkpoint-3", FileKind::Checkpoint, Tear::Never).expect("scan");
        for chunk in [1, MAX_FRAME, MAX_FRAME + 1, 331, 4096, bytes.len(), 1 << 20] {
            let (header, entries) = streamed(&bytes, chunk).expect("stream");
            assert_eq!(Some(header), whole.header, "chunk {chunk}");
            assert_eq!(entries, whole.entries(&bytes), "chunk {chunk}");
        }
    }

    #[test]
    fn damage_anywhere_is_refused_as_a_scan_refuses_it() {
        // Defect: a bad frame past the first chunk, or a file cut short inside
        // a frame, read as the file's end.
        let bytes = checkpoint(20);
        for at in [0, HEADER_LEN + 3, bytes.len() / 2, bytes.len() - 5] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(matches!(
                streamed(&bad, 331),
                Err(Error::CheckpointCorrupt { .. })
            ));
        }
        let cut = &bytes[..bytes.len() - 7];
        assert!(matches!(
            streamed(cut, 331),
            Err(Error::CheckpointCorrupt { .. })
        ));
    }

    /// A checkpoint's frames are numbered from 0 and one by one, so that its
    /// end frame's count counts them: a frame numbered `u64::MAX` (then 0)
    /// is damage, not an overflow, and frames numbered from 5 with an end
    /// frame saying 7 came before it do not pass for a whole checkpoint.
    #[test]
    fn frames_are_numbered_from_zero_one_by_one() {
        let frames = |seqs: &[(u64, Entry)]| {
            let mut out = encode_header(FileKind::Checkpoint, 3, 2).to_vec();
            for (seq, e) in seqs {
                encode_frame(&mut out, *seq, 0, e);
            }
            out
        };
        let wrapped = frames(&[
            (u64::MAX, Entry::Degraded(0)),
            (0, Entry::End { frames: 0 }),
        ]);
        let late = frames(&[(5, Entry::Degraded(0)), (6, Entry::End { frames: 6 })]);
        for bytes in [wrapped, late] {
            let err = streamed(&bytes, 331).map(|_| ()).unwrap_err();
            assert!(matches!(err, Error::CheckpointCorrupt { .. }), "{err}");
        }
        let from_zero = frames(&[(0, Entry::Degraded(0)), (1, Entry::End { frames: 1 })]);
        assert_eq!(streamed(&from_zero, 331).unwrap().1.len(), 2);
    }
}
