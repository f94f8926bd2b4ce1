//! Tags, the engine's key for each record (see [`Tag`]): the writes that set
//! them and the reads that return them with their record.

use super::Store;
use crate::bytes::Bytes;
use crate::error::Result;
use crate::protocol::BatchItem;
use crate::record::{ExtentId, Snapshot, Tag};

impl Store {
    /// [`write`](Self::write) that stores `tag` with the record: the engine's
    /// own key for the extent, durable with it, returned by
    /// [`snapshot_tagged`](Self::snapshot_tagged) and
    /// [`records_tagged`](Self::records_tagged) and carried by the write's
    /// [`Event::Written`](crate::events::Event::Written). An engine rebuilds its
    /// index at open from tags alone, reading no data.
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write).
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::{ExtentId, MemBackend, Store, StoreConfig, Tag};
    ///
    /// let store = Store::new(MemBackend::new(1), StoreConfig::default())?;
    /// store.write_tagged(ExtentId(3), b"blob bytes", Tag::new(b"sha256:9f86d0")?)?;
    /// let (record, tag) = store.snapshot_tagged(ExtentId(3))?;
    /// assert_eq!((record.generation(), tag.as_bytes()), (1, &b"sha256:9f86d0"[..]));
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn write_tagged(&self, id: ExtentId, bytes: &[u8], tag: Tag) -> Result<Snapshot> {
        self.check_open()?;
        self.check_length(bytes.len())?;
        self.shared.counters.writes.bump();
        self.write_value(id, Bytes::from(bytes), tag)
    }

    /// [`write_bytes`](Self::write_bytes) with a tag, as
    /// [`write_tagged`](Self::write_tagged).
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write).
    pub fn write_bytes_tagged(&self, id: ExtentId, value: Bytes, tag: Tag) -> Result<Snapshot> {
        self.check_open()?;
        self.check_length(value.len())?;
        self.shared.counters.writes.bump();
        self.write_value(id, value, tag)
    }

    /// [`write_batch`](Self::write_batch) whose writes store tags, as
    /// [`write_tagged`](Self::write_tagged): each tag is journaled with its
    /// record, so the batch's tags are durable all or nothing with it.
    ///
    /// # Errors
    ///
    /// As [`write_batch`](Self::write_batch).
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::{ExtentId, MemBackend, Store, StoreConfig, Tag};
    ///
    /// let store = Store::new(MemBackend::new(2), StoreConfig::default())?;
    /// let items = [
    ///     (ExtentId(1), &b"one"[..], Tag::new(b"key-one")?),
    ///     (ExtentId(2), &b"two"[..], Tag::new(b"key-two")?),
    /// ];
    /// store.write_batch_tagged(&items)?;
    /// let keys: Vec<_> = store.records_tagged().map(|(_, tag)| tag).collect();
    /// assert_eq!(keys[1].as_bytes(), b"key-two");
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn write_batch_tagged(&self, items: &[(ExtentId, &[u8], Tag)]) -> Result<Vec<Snapshot>> {
        self.check_open()?;
        // Before the copies, as `write` checks before its own.
        for &(_, bytes, _) in items {
            self.check_length(bytes.len())?;
        }
        let items = (items.iter())
            .map(|&(id, bytes, tag)| BatchItem::Write(id, Bytes::from(bytes), tag))
            .collect();
        self.batch_of(items)
    }

    /// The current record of `id` with its tag (see
    /// [`write_tagged`](Self::write_tagged)), both of the same committed
    /// record. Costs a tag lookup and a second snapshot over
    /// [`snapshot`](Self::snapshot), which stays four words and lock-free.
    ///
    /// # Errors
    ///
    /// As [`snapshot`](Self::snapshot); [`Error::WriteInProgress`](crate::Error::WriteInProgress) (retryable)
    /// if writes of `id` committed through every one of [`MAX_ATTEMPTS`](crate::MAX_ATTEMPTS)
    /// lookups.
    pub fn snapshot_tagged(&self, id: ExtentId) -> Result<(Snapshot, Tag)> {
        self.shared.core.tagged(id)
    }

    /// [`records`](Self::records) with each record's tag: what an engine that
    /// keeps its keys in tags scans at open to rebuild its index, reading no
    /// data.
    pub fn records_tagged(&self) -> impl Iterator<Item = (Snapshot, Tag)> + '_ {
        let core = &self.shared.core;
        (core.table.allocated_ids(0))
            .filter_map(|id| core.tagged_waiting(id))
            .filter(|(s, _)| s.state() != crate::record::State::Vacant)
    }
}
