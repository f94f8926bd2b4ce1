//! The crate's own constructors of [`Error`]: from an `io::Error`, a bound
//! check, a failed journal, an unknown outcome.

use super::{Error, Result};
use crate::record::ExtentId;

impl Error {
    /// `Ok` if `ok`, else [`Error::InvalidConfig`] naming `field`, its `value`, and
    /// where the bound is documented (`see`).
    pub(crate) fn check_bound(
        field: &'static str,
        ok: bool,
        value: impl std::fmt::Display,
        see: &str,
    ) -> Result<()> {
        if ok {
            return Ok(());
        }
        Err(Error::InvalidConfig {
            field,
            reason: format!("{value} is out of bounds (see {see})"),
        })
    }

    /// What a change the journal refuses after `failure` failed it gets
    /// ([`Error::JournalFailed`]): certainly not written, and not retryable.
    pub(crate) fn journal_failed(failure: &Error) -> Error {
        Error::JournalFailed {
            cause: failure.to_string(),
        }
    }

    /// [`Error::OutcomeUnknown`] for the `op` of `extent`, caused by `cause` (an
    /// `OutcomeUnknown` from the journal keeps its own cause).
    pub(crate) fn unknown(op: &'static str, extent: ExtentId, cause: Error) -> Self {
        let cause = match cause {
            Error::OutcomeUnknown { cause, .. } => cause,
            other => other.to_string(),
        };
        Error::OutcomeUnknown { op, extent, cause }
    }

    /// An [`Error::Io`] from a `std::io::Error` ([`Error::DiskFull`] for a write
    /// that found the file system full).
    pub(crate) fn io(device: u16, op: &'static str, err: &std::io::Error) -> Self {
        if op == "write" && is_full(err.kind()) {
            return Error::DiskFull { device, op };
        }
        Error::Io {
            device,
            op,
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}

/// Whether `kind` says the file system (or the user's quota) is full.
fn is_full(kind: std::io::ErrorKind) -> bool {
    matches!(
        kind,
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}
