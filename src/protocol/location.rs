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
