//! What an error met at a copy's location says of that location.

use crate::error::Error;

/// Whether `err`, from a write to or a read of a location an operation
/// allocated for its copy, says that location may be bad: a media fault
/// ([`Error::is_media_fault`]). A full or read-only file system, a missing
/// file, a refused argument or an interruption say nothing of the location,
/// and a mark would retire good space for good.
pub(crate) fn location_failed(err: &Error) -> bool {
    err.is_media_fault()
}

impl super::Core {
    /// [`mark_bad`](Self::mark_bad) after a write of new data to `location`
    /// failed ([`location_failed`]): on a durable store the mark also goes to
    /// the journal with its next append (a marker, as an overlapped write's
    /// `Synced` is: `Overlaps::carry`; on an idle store the flusher appends
    /// it where overlapped writes run one, and `close` carries it with its
    /// own marker), so a reopen keeps it too. A crash before that append
    /// forgets it: the location then fails the next write placed there,
    /// which marks it again. A write that failed has nothing to wait for, so
    /// it waits for no sync.
    pub(crate) fn mark_bad_later(&self, location: crate::record::Location) {
        // `keep_on_listener_panic`: a store without a journal, where nothing
        // would carry the mark.
        if self.mark_bad(location) && !self.keep_on_listener_panic {
            self.overlaps.carry(crate::journal::Entry::Bad(location));
        }
    }
}
