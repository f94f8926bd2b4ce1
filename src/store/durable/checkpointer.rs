//! The checkpointer: writes each checkpoint a rotation made due, on a thread
//! of its own, so that no operation waits for a checkpoint of the whole table.

use super::{Journal, Live};
use crate::sync::Ordering;

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
}
