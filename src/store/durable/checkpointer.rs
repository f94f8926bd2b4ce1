//! The checkpointer: writes each checkpoint a rotation made due, on a thread
//! of its own, so that no operation waits for a checkpoint of the whole table.

use super::{Journal, Live, io_error};
use crate::error::Result;
use crate::journal::CheckpointEncoder;
use crate::journal::writer::CheckpointPlanner;
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
            // Relaxed: stored under the writer's lock, held here (see
            // `handed_over`).
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
    /// time as [`Live::each_image_entry`] reads it, and cuts the file at its
    /// end: a retry after a full disk writes it again, and the live state may
    /// have fewer records by then.
    pub(super) fn write_image(
        &self,
        file: &str,
        number: u64,
        planner: &CheckpointPlanner,
        live: &dyn Live,
    ) -> Result<()> {
        let f = self.dir.file(file, true)?;
        let mut offset = 0u64;
        let mut drain = |encoder: &mut CheckpointEncoder, at_least: usize| -> Result<()> {
            let bytes = encoder.pending();
            if bytes.len() >= at_least {
                (f.write_all_at(bytes, offset)).map_err(|e| io_error("write", &e))?;
                offset += bytes.len() as u64;
                encoder.taken();
            }
            Ok(())
        };
        // One frame at most past the chunk before it is drained.
        let mut encoder = planner.encoder(number, CHUNK + 512);
        live.each_image_entry(&mut |entry| {
            encoder.push(entry);
            drain(&mut encoder, CHUNK)
        })?;
        encoder.finish();
        drain(&mut encoder, 0)?;
        f.set_len(offset).map_err(|e| io_error("truncate", &e))
    }
}
