//! The steps one `write` call is made of: validation, one run of the write
//! machine, the wait for another write of the same extent, and the accounting.

use super::{Store, shared};
use crate::bytes::Bytes;
use crate::error::{Error, Result};
use crate::protocol::{Machine, WriteOp};
use crate::record::{ExtentId, Snapshot, Tag};

impl Store {
    /// [`Error::TooLarge`] past [`max_extent_bytes`](super::StoreConfigBuilder::max_extent_bytes).
    pub(super) fn check_length(&self, length: usize) -> Result<()> {
        let length = length as u64;
        if length > self.max_extent_bytes {
            return Err(Error::TooLarge {
                length,
                max: self.max_extent_bytes,
            });
        }
        Ok(())
    }

    /// One run of the write machine.
    pub(super) fn attempt_write(&self, id: ExtentId, value: Bytes, tag: Tag) -> Result<Snapshot> {
        self.shared.make_room();
        self.drive_change(WriteOp::new(id, value, tag))
    }

    /// Runs a change (a write, delete or batch: each holds its extents'
    /// pending marks while it runs) to its end, then wakes the writes waiting
    /// for one to end (`wait_for_write_of`).
    pub(super) fn drive_change<M: Machine>(&self, op: M) -> Result<M::Output> {
        let result = self.shared.drive_all(op);
        self.shared.write_finished();
        result
    }

    /// Runs `attempt` until it is not refused for a write (or delete) in flight
    /// of an extent it names, waiting for that one to end before each retry,
    /// until `deadline`: then its refusal is the answer. A refused attempt
    /// changed no record's content (the refusal comes before any record is
    /// proposed; a batch may have begun and aborted its earlier items, which
    /// ends a compaction of them), and each retry waits for a write to end.
    pub(super) fn in_turn<T>(
        &self,
        deadline: std::time::Instant,
        mut attempt: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        // Bounded by the deadline: each pass waits for the write in flight.
        loop {
            match attempt() {
                Err(Error::WriteInProgress { extent }) if std::time::Instant::now() < deadline => {
                    self.wait_for_write_of(extent, deadline);
                }
                other => return other,
            }
        }
    }

    /// Waits until no write of `id` is pending (the one in flight committed or
    /// aborted), or `deadline`: other extents' writes ending do not end the wait.
    pub(super) fn wait_for_write_of(&self, id: ExtentId, deadline: std::time::Instant) {
        // Bounded by the deadline: each pass waits for some write to end.
        loop {
            // Read before the record: a write that ends after this read bumps
            // the counter after clearing its mark, so the wait below sees it.
            let seen = self.shared.writes_finished();
            let pending = (self.shared.core.table.snapshot(id)).is_ok_and(|s| s.write_pending());
            let now = std::time::Instant::now();
            if !pending || now >= deadline {
                return;
            }
            self.shared.wait_write(seen, deadline - now);
        }
    }

    /// One latency sample and, on success, one acknowledged write per call.
    pub(super) fn finish_write(
        &self,
        started: std::time::Instant,
        result: Result<Snapshot>,
    ) -> Result<Snapshot> {
        let latency = &self.shared.latency;
        latency.record(&latency.write, shared::elapsed_ns(started));
        let committed = result?;
        self.shared.counters.write_ok.bump();
        self.trim_if_due();
        Ok(committed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::record::ExtentId;
    use crate::{MemBackend, Store, StoreConfig};

    /// Every call that holds an extent's pending mark wakes the writes of that
    /// extent waiting for it (`wait_for_write_of`) when it ends: a delete
    /// holds the mark while its record is journaled, so a write racing it
    /// would otherwise sleep out its whole `write_wait_ms`.
    #[test]
    fn a_write_a_delete_and_a_batch_each_wake_the_waiting_writes() {
        let store = Store::new(MemBackend::new(1), StoreConfig::default()).expect("store");
        let id = ExtentId(4);
        let before = store.shared.writes_finished();
        store.write(id, b"extent 4, generation 1").expect("write");
        let after_write = store.shared.writes_finished();
        assert!(after_write > before, "a write wakes");
        store.delete(id).expect("delete");
        let after_delete = store.shared.writes_finished();
        assert!(after_delete > after_write, "a delete wakes");
        (store.write_batch(&[(id, &b"extent 4, generation 2"[..])])).expect("batch");
        assert!(
            store.shared.writes_finished() > after_delete,
            "a batch wakes"
        );
    }
}
