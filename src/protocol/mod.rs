//! The protocol, written once and without I/O.
//!
//! Each operation is a small state machine over the shared [`Core`] (table, cache,
//! allocator, reclaimer). It takes snapshot and transition steps itself and returns
//! a [`Step`] asking its driver for the I/O it needs; the driver performs it and
//! feeds the result back. Two drivers run the same machines: the blocking
//! [`Store`](crate::Store) and the emulator. Nothing here blocks or sleeps.
//!
//! Every retry loop is bounded ([`MAX_ATTEMPTS`]); running out of attempts returns
//! the last retryable error, never spins forever.

mod read;
mod write;

#[cfg(all(test, loom))]
mod loom_models;

pub(crate) use read::ReadOp;
pub(crate) use write::WriteOp;

use crate::bytes::Bytes;
use crate::cache::{Cache, Flight};
use crate::error::Result;
use crate::record::Location;
use crate::space::{Allocator, Reclaimer};
use crate::sync::Arc;
use crate::table::ExtentTable;

/// How many times one operation restarts after a race (a version conflict, a
/// superseded fill, a checksum mismatch explained by a concurrent commit).
pub const MAX_ATTEMPTS: u32 = 8;

/// Everything the operations share.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) table: ExtentTable,
    pub(crate) cache: Cache,
    pub(crate) allocator: Allocator,
    pub(crate) reclaimer: Reclaimer,
}

impl Core {
    /// Queues `location` for reuse once no reader can still be reading it.
    pub(crate) fn retire(&self, location: Location) {
        self.reclaimer.retire(location, |l| self.allocator.free(l));
    }

    /// Frees whatever retired locations have become safe.
    pub(crate) fn collect(&self) {
        self.reclaimer.collect(|l| self.allocator.free(l));
    }
}

/// The I/O an operation asks its driver for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IoRequest {
    /// Read the bytes at a location.
    Read(Location),
    /// Write bytes at a location.
    Write(Location, Bytes),
    /// The durability acknowledgment of a device's completed writes.
    Sync(u16),
}

/// The result of an [`IoRequest`], fed back to the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IoResult {
    /// Bytes read, or the backend's error.
    Read(Result<Bytes>),
    /// A write or sync finished.
    Done(Result<()>),
}

/// What an operation wants next.
#[derive(Debug)]
pub(crate) enum Step<T> {
    /// Perform this I/O and call the operation's `on_io`.
    Io(IoRequest),
    /// Wait for another operation's load (single flight) and call `on_wait`.
    Wait(Arc<Flight>),
    /// Finished.
    Done(Result<T>),
}
