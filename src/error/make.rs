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

    /// Whether this, the journal's answer to an append, says it refused or
    /// lost it (it failed, or the store closed): only a reopen helps, which an
    /// operation reports rather than its own finding.
    pub(crate) fn is_journal_refusal(&self) -> bool {
        matches!(
            self,
            Error::OutcomeUnknown { .. } | Error::JournalFailed { .. } | Error::Shutdown
        )
    }

    /// What a change the journal refuses after `failure` failed it gets
    /// ([`Error::JournalFailed`]): certainly not written, and not retryable.
    pub(crate) fn journal_failed(failure: &Error) -> Error {
        match failure {
            // The writer's own verdict (checkpoints that kept failing).
            Error::JournalFailed { .. } => failure.clone(),
            other => Error::JournalFailed {
                cause: other.to_string(),
            },
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

    /// An [`Error::Io`] from a `std::io::Error` ([`Error::DiskFull`] for a call
    /// that takes space, a write or a file's or directory's creation, and
    /// found the file system full: XFS allocates inodes as it goes, ext4 can
    /// run out of them, so a create can be what meets a full disk, and the
    /// metadata reserve is released for it as for a write). Never for a sync:
    /// its failure may have dropped pages, and a retry of it would vouch for
    /// them. Nor for a rename: a checkpoint's plan renames after its pointer
    /// switch (the retired journal kept for recycling), and a full-disk retry
    /// runs the whole plan again, which would write over the image the
    /// pointer names.
    pub(crate) fn io(device: u16, op: &'static str, err: &std::io::Error) -> Self {
        let takes_space = matches!(
            op,
            "write" | "open" | "create dir" | "backup write" | "backup open"
        );
        if takes_space && is_full(err.kind()) {
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A full file system met by a call that takes space is DiskFull, which
    /// releases the metadata reserve and is retried; met by a sync, it stays
    /// an I/O error (its pages may be gone: a retry must not vouch for them).
    #[test]
    fn a_full_disk_is_disk_full_for_writes_and_creations_only() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        for op in ["write", "open", "create dir", "backup write"] {
            let err = Error::io(2, op, &full);
            assert!(
                matches!(err, Error::DiskFull { device: 2, .. }),
                "{op}: {err}"
            );
        }
        for op in ["sync", "read", "remove", "rename"] {
            let err = Error::io(2, op, &full);
            assert!(matches!(err, Error::Io { device: 2, .. }), "{op}: {err}");
        }
    }
}
