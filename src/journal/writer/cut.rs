//! Cuts: group commits held while a backup reads its image, so that the image
//! is one instant of the store's history (see `Store::checkpoint_to`).
//!
//! An image read while writes go on is a checkpoint's fuzzy image: each extent
//! as of its own instant, which a checkpoint may take because the journals after
//! its switch replay the rest. A backup has no journal to replay, so it reads its
//! image while no write is handed out: no record becomes durable during the read
//! but those of the plan already in flight (or one to run again behind the
//! reserve's release), whose proposals were registered before the hold began,
//! so the image's read of the proposals (made first) finds them or the table
//! shows their commits. The instant is that read of the proposals: the image
//! holds every write durable before it, and of the writes whose proposals were
//! registered but not yet durable, those registered before it, each whole (a
//! batch registers its proposals at once); none was acknowledged, and each of
//! them may be lost or kept whole by a crash. The loom model
//! `backup_image_holds_a_batch_whole` checks this against the protocol.
//!
//! What commits without the journal's group commit first (a compaction's or a
//! remap's move, which keep the bytes; a quarantine; a bad location or a
//! degraded device) may land in the image during the read: each is a state a
//! crash may keep too. A batch's write that such a commit overtook is proposed
//! again after it (see `protocol::batch`), and a backup may hold the batch
//! without it, as a crash may.

use super::Writer;

impl Writer {
    /// Holds back every group commit and switch not yet handed out (and, in
    /// the store's driver, the close marker) until as many
    /// [`release_cut`](Self::release_cut)s. A plan handed out before still
    /// completes, and one to run again behind the reserve's release may run:
    /// its entries were handed to a write before the cut.
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
