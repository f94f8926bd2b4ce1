//! The steps one `write` call is made of: validation, one run of the write
//! machine, the wait for another write of the same extent, and the accounting.

use super::{Store, shared};
use crate::bytes::Bytes;
use crate::error::{Error, Result};
use crate::protocol::WriteOp;
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

    /// One run of the write machine; wakes the writes waiting for one to end.
    pub(super) fn attempt_write(&self, id: ExtentId, value: Bytes, tag: Tag) -> Result<Snapshot> {
        self.shared.make_room();
        let result = self.shared.drive(WriteOp::new(id, value, tag), true);
        self.shared.write_finished();
        result?.ok_or(Error::Internal {
            what: "a write waited on a load",
        })
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
