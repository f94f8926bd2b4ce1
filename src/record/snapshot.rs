//! The `Copy` view of one record at one version.

use super::transition::Fields;
use super::{ExtentId, Location, State};

/// A copy of one record at one version.
///
/// # Consistency
///
/// Every field belongs to the same committed transition: the table only hands out a
/// snapshot after checking that the version did not change while the fields were
/// copied (see [`ExtentTable`](crate::ExtentTable)). A snapshot is a value; it does
/// not change when the record does. Compare its [`version`](Self::version) with a
/// later snapshot's to learn whether anything was committed in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Snapshot {
    pub(crate) extent: ExtentId,
    pub(crate) version: u64,
    pub(crate) fields: Fields,
}

impl Snapshot {
    /// The initial record of every extent: `Vacant`, version 0, generation 0.
    pub const fn vacant(extent: ExtentId) -> Snapshot {
        Snapshot {
            extent,
            version: 0,
            fields: Fields {
                state: State::Vacant,
                write_pending: false,
                generation: 0,
                location: Location {
                    device: 0,
                    offset: 0,
                    length: 0,
                },
                checksum: 0,
            },
        }
    }

    /// A committed record as recovery found it (no write pending).
    pub(crate) const fn recovered(
        extent: ExtentId,
        version: u64,
        state: State,
        generation: u64,
        location: Location,
        checksum: u32,
    ) -> Snapshot {
        Snapshot {
            extent,
            version,
            fields: Fields {
                state,
                write_pending: false,
                generation,
                location,
                checksum,
            },
        }
    }

    /// The extent.
    pub const fn extent(&self) -> ExtentId {
        self.extent
    }
    /// The version: even, bumped by 2 per committed transition.
    pub const fn version(&self) -> u64 {
        self.version
    }
    /// The lifecycle state.
    pub const fn state(&self) -> State {
        self.fields.state
    }
    /// Whether a write is in flight (its bytes are not served until it commits).
    pub const fn write_pending(&self) -> bool {
        self.fields.write_pending
    }
    /// The content generation of the committed bytes.
    pub const fn generation(&self) -> u64 {
        self.fields.generation
    }
    /// Where the committed bytes live.
    pub const fn location(&self) -> Location {
        self.fields.location
    }
    /// The identity-bound checksum of the committed bytes.
    pub const fn checksum(&self) -> u32 {
        self.fields.checksum
    }
    /// Checks `bytes` against this snapshot's identity-bound checksum.
    ///
    /// # Errors
    ///
    /// [`Error::ChecksumMismatch`](crate::Error::ChecksumMismatch) carrying both
    /// checksums and the snapshot's location.
    pub fn check(&self, bytes: &[u8]) -> crate::Result<()> {
        let actual = super::checksum(self.extent, self.generation(), bytes);
        if actual == self.checksum() {
            Ok(())
        } else {
            Err(crate::Error::ChecksumMismatch {
                extent: self.extent,
                generation: self.generation(),
                location: self.location(),
                expected: self.checksum(),
                actual,
            })
        }
    }

    /// Whether committed bytes can be read from media: `Durable` or `Compacting`.
    pub const fn is_readable(&self) -> bool {
        matches!(self.fields.state, State::Durable | State::Compacting)
    }
}
