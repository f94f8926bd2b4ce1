//! Cuts: group commits held while a backup reads its image, so that the image
//! is one instant of the store's history (see `Store::checkpoint_to`).
//!
//! An image read while writes go on is a checkpoint's fuzzy image: each extent
//! as of its own instant, which a checkpoint may take because the journals after
//! its switch replay the rest. A backup has no journal to replay, so it reads its
//! image while no write is handed out: no record becomes durable during the read
//! but those of the write already in flight, whose proposals were registered
//! before the hold began, so the image's read of the proposals (made first)
//! finds them or the table shows their commits. Every extent is then as of the
//! hold's start, up to the writes in flight, each whole (a batch registers its
//! proposals at once). The loom model `backup_image_holds_a_batch_whole` checks
//! this against the protocol.

use super::Writer;

impl Writer {
    /// Holds back every group commit, switch and close marker not yet handed
    /// out until as many [`release_cut`](Self::release_cut)s (a plan handed out
    /// before still completes, and one to run again behind the reserve's
    /// release still does: its entries were handed to a write already).
    pub(crate) fn hold_cut(&mut self) {
        self.cuts += 1;
    }

    /// Ends one [`hold_cut`](Self::hold_cut); the driver then wakes the
    /// committers waiting.
    pub(crate) fn release_cut(&mut self) {
        debug_assert!(self.cuts > 0, "a cut released that was not held");
        self.cuts = self.cuts.saturating_sub(1);
    }

    /// Whether a cut holds writes back.
    pub(crate) fn cut_held(&self) -> bool {
        self.cuts > 0
    }
}
