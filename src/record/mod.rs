//! Records: what the table knows about one extent.
//!
//! A record is an [`ExtentId`]'s current [`State`], content generation, [`Location`]
//! and identity-bound checksum, plus a version bumped by every committed transition.
//! A [`Snapshot`] is a copy of one record at one version. Records change only
//! through a [`Change`], checked against the [transition table](TRANSITIONS).

mod checksum;
mod packed;
mod snapshot;
mod tag;
mod transition;

pub use checksum::checksum;
pub(crate) use packed::Packed;
pub use snapshot::Snapshot;
pub use tag::{MAX_TAG_LEN, Tag};
pub(crate) use transition::lookup;
pub use transition::{Change, ChangeKind, Rule, State, TRANSITIONS};

use std::fmt;

/// The identity of an extent. Never reused: a new extent gets a new id, so a cache
/// key or a checksum seeded with the id can never be confused with another extent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtentId(pub u64);

impl fmt::Display for ExtentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "extent#{}", self.0)
    }
}

/// Where an extent's bytes live now: an attribute, never an identity. Compaction and
/// remap change it; the content generation and checksum stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Location {
    /// The device (a file per device in `FileBackend`).
    pub device: u16,
    /// Byte offset on the device.
    pub offset: u64,
    /// Length in bytes.
    pub length: u32,
}

impl Location {
    /// A location of `length` bytes at `offset` on `device`.
    pub const fn new(device: u16, offset: u64, length: u32) -> Self {
        Self {
            device,
            offset,
            length,
        }
    }

    /// One past the last byte (saturating at `u64::MAX`).
    pub const fn end(&self) -> u64 {
        self.offset.saturating_add(self.length as u64)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dev{}@{}+{}", self.device, self.offset, self.length)
    }
}

/// The largest content generation a record can hold (48 bits).
pub const MAX_GENERATION: u64 = (1 << 48) - 1;

/// The largest version a record can reach (56 bits, bumped by 2 per commit: at ten
/// million commits a second on one extent it lasts over a century).
pub const MAX_VERSION: u64 = (1 << 56) - 1;
