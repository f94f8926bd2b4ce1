//! What an error met at a copy's location says of that location.

use crate::error::Error;

/// Whether `err`, from a write to or a read of a location an operation
/// allocated for its copy, says that location may be bad: a checksum
/// mismatch, a short read, or an I/O error of the kind a medium gives (EIO
/// and the like). Not a full or read-only file system, a file size limit, a
/// missing file, a refused argument or an interruption: those say nothing of
/// the location, and a mark would retire good space for good.
pub(crate) fn location_failed(err: &Error) -> bool {
    use std::io::ErrorKind as K;
    match err {
        Error::ChecksumMismatch { .. } | Error::ShortRead { .. } => true,
        Error::Io { kind, .. } => !matches!(
            kind,
            K::StorageFull
                | K::QuotaExceeded
                | K::ReadOnlyFilesystem
                | K::FileTooLarge
                | K::NotFound
                | K::PermissionDenied
                | K::InvalidInput
                | K::Unsupported
                | K::OutOfMemory
                | K::Interrupted
                | K::WouldBlock
        ),
        _ => false,
    }
}
