//! One record's atomic storage and its seqlock protocol.
//!
//! # Orderings
//!
//! The header word holds the version; an odd version means a writer holds the slot.
//!
//! Writer (inside [`RecordSlot::lock`] … [`RecordSlot::publish`]):
//! 1. CAS header `h → h+1` (odd), `Acquire` (site `LockCas`): pairs with the previous
//!    publish's `Release` store, so the writer's relaxed field loads below see the
//!    fields of version `h` and its stores come after them in modification order.
//!    A caller that took `h` from a snapshot is already synchronised by that
//!    snapshot's acquire load; this `Acquire` serves callers whose expected version
//!    came from elsewhere (a literal 0 for a new extent, a version counted ahead or
//!    passed over a relaxed channel). The loom model
//!    `no_stale_commit_when_expected_version_is_known_in_advance` fails without it.
//! 2. `fence(Release)` (site `WriterFence`): orders the odd header before the field
//!    stores. A reader that loads any of the new field values and then runs its
//!    acquire fence synchronises with this fence, so its header re-check sees the odd
//!    header (or later) and it discards the copy.
//! 3. Relaxed field stores.
//! 4. Store the new even header, `Release` (site `PublishStore`): pairs with the
//!    reader's first header load, making the new fields visible with the version.
//!
//! Reader ([`RecordSlot::try_read`], one attempt):
//! 1. Load header, `Acquire` (site `ReaderLoad`); odd → publish in progress, give up.
//! 2. Relaxed field loads.
//! 3. `fence(Acquire)` (site `ReaderFence`), pairs with step 2 of the writer.
//! 4. Relaxed re-load of the header; if it differs the copy may be torn, give up.
//!
//! The reader only loads: it never writes shared memory, so readers do not contend
//! with each other for the cache line.

use crate::record::Packed;
use crate::sync::{AtomicU64, Ordering, Site, fence, order};

/// The header bit that is set while a transition is being published (the low bit
/// of the version).
pub(crate) const PUBLISHING_BIT: u64 = Packed::with_version(0, 1);

/// One record: a header word and three field words, 32 bytes, aligned so that a
/// record never straddles a cache line.
#[derive(Debug, Default)]
#[repr(align(32))]
pub(crate) struct RecordSlot {
    header: AtomicU64,
    words: [AtomicU64; 3],
}

impl RecordSlot {
    /// One seqlock read attempt: the packed record, or `None` if a publish was in
    /// progress or completed during the copy.
    #[inline]
    pub(crate) fn try_read(&self) -> Option<Packed> {
        let h1 = self.header.load(order(Site::ReaderLoad));
        if h1 & PUBLISHING_BIT != 0 {
            return None;
        }
        // Relaxed: validated by the fence + header re-check below.
        let words = [
            self.words[0].load(Ordering::Relaxed),
            self.words[1].load(Ordering::Relaxed),
            self.words[2].load(Ordering::Relaxed),
        ];
        fence(Site::ReaderFence);
        // Relaxed: the fence above orders it after the field loads.
        let h2 = self.header.load(Ordering::Relaxed);
        (h1 == h2).then_some(Packed { header: h1, words })
    }

    /// The header as it is now, as a hint for [`RecordSlot::lock`]. Relaxed: the lock CAS
    /// re-validates it, and the state bits read from it are only used to refuse
    /// early (the CAS proves they were still current).
    #[inline]
    pub(crate) fn header_hint(&self) -> u64 {
        self.header.load(Ordering::Relaxed)
    }

    /// Takes the slot if its header is still `header` (even). Returns the committed
    /// record of that version, which the caller now owns until it calls
    /// [`RecordSlot::publish`] or [`RecordSlot::unlock`].
    pub(crate) fn lock(&self, header: u64) -> Option<Packed> {
        debug_assert_eq!(header & PUBLISHING_BIT, 0, "lock from an odd header");
        self.header
            .compare_exchange(
                header,
                header | PUBLISHING_BIT,
                order(Site::LockCas),
                Ordering::Relaxed,
            )
            .ok()?;
        fence(Site::WriterFence);
        // Relaxed: the Acquire CAS synchronised with the publish of `header`, and no
        // other writer can store while we hold the odd header.
        let words = [
            self.words[0].load(Ordering::Relaxed),
            self.words[1].load(Ordering::Relaxed),
            self.words[2].load(Ordering::Relaxed),
        ];
        Some(Packed { header, words })
    }

    /// Publishes `next` (whose header carries an even version greater than the
    /// locked one) and releases the slot.
    pub(crate) fn publish(&self, next: Packed) {
        debug_assert_eq!(next.header & PUBLISHING_BIT, 0, "publish of an odd header");
        for (word, value) in self.words.iter().zip(next.words) {
            // Relaxed: ordered after the odd header by the writer fence and before
            // the even header by the Release store below.
            word.store(value, Ordering::Relaxed);
        }
        self.header.store(next.header, order(Site::PublishStore));
    }

    /// Releases the slot without changing it: restores `header`. Readers that saw
    /// the odd header retried; the fields were not touched.
    pub(crate) fn unlock(&self, header: u64) {
        // Release: keeps the writer's loads before the slot is handed on.
        self.header.store(header, Ordering::Release);
    }
}
