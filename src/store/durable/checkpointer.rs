//! The checkpointer: writes each checkpoint a rotation made due, on a thread
//! of its own, so that no operation waits for a checkpoint of the whole table.

use super::{Journal, Live, io_error};
use crate::error::Result;
use crate::fs::FsFile;
use crate::journal::writer::CheckpointPlanner;
use crate::journal::{CheckpointEncoder, Entry};
use crate::sync::Ordering;

/// Bytes of a checkpoint encoded before they are written: what a checkpoint
/// holds in memory, whatever the table's size.
const CHUNK: usize = 1 << 20;

impl Journal {
    /// The checkpointer's thread: writes every checkpoint handed over
    /// (`write_group`), until [`stop_checkpointer`](Self::stop_checkpointer).
    /// Bounded by that stop: every pass writes one checkpoint or waits for a
    /// wake-up. A checkpoint still handed over when it stops is written by
    /// `close`, or by nobody if the store is dropped in a crash: its journals
    /// then stay and recovery replays them.
    pub(crate) fn checkpoint_loop(&self, live: &dyn Live) {
        let mut g = self.writer.lock();
        loop {
            // Relaxed: under the writer's lock, as `stop_checkpointer` writes it.
            if self.checkpointer_stop.load(Ordering::Relaxed) {
                return;
            }
            // Relaxed: non-zero values are stored under the writer's lock,
            // held here (see `handed_over`); the swap alone makes one taker.
            let number = self.handed_over.swap(0, Ordering::Relaxed);
            if number > 0 {
                drop(g);
                self.checkpoint(number, live);
                g = self.writer.lock();
                continue;
            }
            g = self.checkpoint_cond.wait(g);
        }
    }

    /// Ends [`checkpoint_loop`](Self::checkpoint_loop) once the checkpoint it
    /// is writing, if any, is done.
    pub(crate) fn stop_checkpointer(&self) {
        let _g = self.writer.lock();
        // Relaxed: under the writer's lock, as the checkpointer reads it.
        self.checkpointer_stop.store(true, Ordering::Relaxed);
        self.checkpoint_cond.notify_all();
    }

    /// Writes checkpoint `number` of the live state to `file`, a chunk at a
    /// time as [`Live::each_image_entry`] reads it ([`write_chunked`]).
    pub(super) fn write_image(
        &self,
        file: &str,
        number: u64,
        planner: &CheckpointPlanner,
        live: &dyn Live,
    ) -> Result<()> {
        let f = self.dir.file(file, true)?;
        // One frame at most past the chunk before it is drained.
        let encoder = planner.encoder(number, CHUNK + 512);
        write_chunked(&*f, encoder, CHUNK, |each| live.each_image_entry(each))
    }
}

/// Writes the checkpoint `encoder` encodes from the entries `entries` passes
/// to its callback: to `file` from offset 0, `chunk` bytes or more at a time,
/// then cuts the file at the checkpoint's end. The cut matters: a retry after
/// a full disk writes the same file again, and the live state may have fewer
/// records by then. The bytes are those `encode_checkpoint` makes of the same
/// entries in one buffer (the emulator's and a backup's checkpoints; the tests
/// below hold the two to that).
fn write_chunked(
    file: &dyn FsFile,
    mut encoder: CheckpointEncoder,
    chunk: usize,
    entries: impl FnOnce(&mut dyn FnMut(&Entry) -> Result<()>) -> Result<()>,
) -> Result<()> {
    let mut offset = 0u64;
    let mut drain = |encoder: &mut CheckpointEncoder, at_least: usize| -> Result<()> {
        let bytes = encoder.pending();
        if bytes.len() >= at_least {
            (file.write_all_at(bytes, offset)).map_err(|e| io_error("write", &e))?;
            offset += bytes.len() as u64;
            encoder.taken();
        }
        Ok(())
    };
    entries(&mut |entry| {
        encoder.push(entry);
        drain(&mut encoder, chunk)
    })?;
    encoder.finish();
    drain(&mut encoder, 0)?;
    file.set_len(offset).map_err(|e| io_error("truncate", &e))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::journal::{Image, encode_checkpoint, image_entries};
    use crate::record::Location;
    use parking_lot::Mutex;
    use std::io;

    /// A file in memory that counts its writes.
    #[derive(Debug, Default)]
    struct MemFile {
        bytes: Mutex<Vec<u8>>,
        writes: Mutex<u32>,
    }

    impl FsFile for MemFile {
        fn read_at(&self, _: &mut [u8], _: u64) -> io::Result<usize> {
            Err(io::ErrorKind::Unsupported.into())
        }
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            let mut bytes = self.bytes.lock();
            let end = offset as usize + buf.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[offset as usize..end].copy_from_slice(buf);
            *self.writes.lock() += 1;
            Ok(())
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.bytes.lock().resize(len as usize, 0);
            Ok(())
        }
        fn sync_data(&self) -> io::Result<()> {
            Ok(())
        }
        fn len(&self) -> io::Result<u64> {
            Ok(self.bytes.lock().len() as u64)
        }
    }

    /// An image of `n` bad locations, the i-th at offset 4096 × i with length
    /// i + 1, and one degraded device.
    fn image(n: u64) -> Image {
        let mut image = Image::default();
        for i in 0..n {
            image.apply(&Entry::Bad(Location::new(1, i * 4096, i as u32 + 1)));
        }
        image.apply(&Entry::Degraded(2));
        image
    }

    /// Writes checkpoint 9 of `image` a `chunk` at a time over `file`.
    fn write(file: &MemFile, image: &Image, chunk: usize) {
        let encoder = CheckpointEncoder::new(9, 3, chunk + 512);
        write_chunked(file, encoder, chunk, |each| {
            image_entries(image).try_for_each(|e| each(&e))
        })
        .expect("in memory");
    }

    /// Chunk by chunk, the file ends up holding exactly the bytes of the
    /// whole-image encoding, over a longer file left by an earlier attempt of
    /// the same checkpoint (its tail cut) and over an empty one.
    #[test]
    fn chunks_write_the_whole_image_encoding_and_cut_what_was_there() {
        let (long, short) = (image(300), image(200));
        let earlier = MemFile::default();
        write(&earlier, &long, 64);
        assert_eq!(*earlier.bytes.lock(), encode_checkpoint(9, 3, &long));
        assert!(*earlier.writes.lock() > 10, "written in many chunks");
        write(&earlier, &short, 64);
        assert_eq!(*earlier.bytes.lock(), encode_checkpoint(9, 3, &short));
        let fresh = MemFile::default();
        write(&fresh, &short, 1 << 20);
        assert_eq!(*fresh.writes.lock(), 1, "one chunk");
        assert_eq!(*fresh.bytes.lock(), encode_checkpoint(9, 3, &short));
    }
}
