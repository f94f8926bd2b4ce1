//! [`Batch`]: writes and deletes of many extents applied together.

use super::Store;
use crate::bytes::Bytes;
use crate::error::Result;
use crate::protocol::BatchItem;
use crate::record::{ExtentId, Snapshot, Tag};

/// Writes and deletes of distinct extents, applied together by
/// [`Store::apply_batch`]: durable all or nothing, in one journal append.
///
/// Bound: one change per extent (a second is refused with
/// [`Error::DuplicateExtent`](crate::Error::DuplicateExtent)); the values are
/// held until the batch is applied.
#[derive(Debug, Default)]
pub struct Batch {
    items: Vec<BatchItem>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Writes `value` to `id` (untagged). A `Vec<u8>` or [`Bytes`] is taken
    /// without a copy.
    pub fn write(&mut self, id: ExtentId, value: impl Into<Bytes>) -> &mut Self {
        self.write_tagged(id, value, Tag::EMPTY)
    }

    /// Writes `value` to `id` with `tag` (see
    /// [`Store::write_tagged`](crate::Store::write_tagged)).
    pub fn write_tagged(&mut self, id: ExtentId, value: impl Into<Bytes>, tag: Tag) -> &mut Self {
        self.items.push(BatchItem::Write(id, value.into(), tag));
        self
    }

    /// Deletes `id` (see [`Store::delete`](crate::Store::delete)).
    pub fn delete(&mut self, id: ExtentId) -> &mut Self {
        self.items.push(BatchItem::Delete(id));
        self
    }

    /// The changes in the batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch holds no change.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl Store {
    /// Applies every write and delete of `batch` together: all data writes,
    /// one sync per device touched, one journal append holding every record
    /// (one journal sync on a durable store), then every commit. Returns the
    /// committed records in the batch's order (a delete's is `Vacant`, its
    /// generation kept).
    ///
    /// # Consistency
    ///
    /// **Durable all or nothing**, as [`write_batch`](Self::write_batch): a
    /// crash before the call returns keeps every change of the batch or none
    /// (recovery applies the append whole or not at all). **Readers may see
    /// part of it**: the changes commit one after another once their records
    /// are durable, so a concurrent reader may find one extent already deleted
    /// and another not yet rewritten. When it returns `Ok`, every change is
    /// durable and visible. Each change keeps the guarantees of its single
    /// form ([`write`](Self::write), [`delete`](Self::delete)).
    ///
    /// # Errors
    ///
    /// Checked before anything changes: [`Error::TooLarge`](crate::Error::TooLarge)
    /// past [`max_extent_bytes`](crate::store::StoreConfigBuilder::max_extent_bytes),
    /// [`Error::DuplicateExtent`](crate::Error::DuplicateExtent) for an extent
    /// named twice. Then, failing the whole batch with nothing changed:
    /// [`Error::NotReadable`](crate::Error::NotReadable) for a delete of a
    /// vacant extent, [`Error::WriteInProgress`](crate::Error::WriteInProgress)
    /// if an extent was still being written or deleted after waiting for it as
    /// [`write`](Self::write) waits,
    /// [`Error::VersionConflict`](crate::Error::VersionConflict) if other
    /// transitions of an extent won every bounded attempt (retryable; a
    /// compaction in progress does not count: the batch ends it),
    /// [`Error::NoSpace`](crate::Error::NoSpace), backend and journal errors.
    /// An error while committing (rare: a commit that kept losing races) is
    /// reported after the changes that did commit are durable.
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::{Batch, ExtentId, MemBackend, Store, StoreConfig};
    ///
    /// let store = Store::new(MemBackend::new(2), StoreConfig::default())?;
    /// store.write(ExtentId(1), b"old")?;
    /// let mut batch = Batch::new();
    /// batch.write(ExtentId(2), b"new".to_vec()).delete(ExtentId(1));
    /// let committed = store.apply_batch(batch)?;
    /// assert_eq!(committed.len(), 2);
    /// assert_eq!(&*store.read(ExtentId(2))?, b"new");
    /// assert_eq!(store.read(ExtentId(1)).unwrap_err().code(), "FPRE012");
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn apply_batch(&self, batch: Batch) -> Result<Vec<Snapshot>> {
        self.check_open()?;
        self.batch_of(batch.items)
    }
}
