//! Which errors say the media may have returned wrong or no bytes.

use super::Error;

impl Error {
    /// Whether the media may have returned wrong or no bytes: a checksum
    /// mismatch, a short read, or an I/O error of the kind a medium gives (EIO
    /// and the like, `Other` included). Not a full or read-only file system, a
    /// file size limit, a missing file, a refused permission or argument, an
    /// unsupported call, a lack of memory, an interruption, a busy resource, a
    /// timeout or a network that went away (a remote backend's): those say
    /// nothing of the bytes at the location. The integrity ladder verifies only
    /// media faults before it decides between a race, a transient fault and
    /// FPRE004; any other error goes back to the caller as it is, so a backend
    /// that refuses a read for a while never gets an extent quarantined and its
    /// location retired.
    pub fn is_media_fault(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
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
                    | K::TimedOut
                    | K::ResourceBusy
                    | K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::BrokenPipe
                    | K::HostUnreachable
                    | K::NetworkUnreachable
                    | K::NetworkDown
                    | K::StaleNetworkFileHandle
            ),
            _ => false,
        }
    }
}
