//! The `Copy` view of one record at one version.

use super::packed::Packed;
use super::transition::Fields;
use super::{Change, ExtentId, Location, State};
use crate::error::Result;

/// A copy of one record at one version.
///
/// # Consistency
///
/// Every field belongs to the same committed transition: the table only hands out a
/// snapshot after checking that the version did not change while the fields were
/// copied (see [`ExtentTable`](crate::ExtentTable)). A snapshot is a value; it does
/// not change when the record does. Compare its [`version`](Self::version) with a
/// later snapshot's to learn whether anything was committed in between.
//
// Held as the record's packed words, exactly as the table stores them (the header
// without its publishing bit): a read copies four words and decodes a field only
// when asked. Packing is canonical, so equality and hashing of the words are those
// of the fields.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Snapshot {
    pub(crate) extent: ExtentId,
    pub(crate) packed: Packed,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (version, fields) = self.packed.unpack();
        f.debug_struct("Snapshot")
            .field("extent", &self.extent)
            .field("version", &version)
            .field("fields", &fields)
            .finish()
    }
}

impl Snapshot {
    /// The initial record of every extent: `Vacant`, version 0, generation 0.
    pub const fn vacant(extent: ExtentId) -> Snapshot {
        Snapshot {
            extent,
            packed: Packed {
                header: 0,
                words: [0; 3],
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
            packed: Packed::pack(
                version,
                &Fields {
                    state,
                    write_pending: false,
                    generation,
                    location,
                    checksum,
                },
            ),
        }
    }

    /// The record `change` would commit on top of this snapshot (the next version,
    /// the table's fields), or the typed error the table would give: what a
    /// durable store journals before it makes the transition.
    pub(crate) fn after(&self, change: Change) -> Result<Snapshot> {
        let (version, fields) = self.packed.unpack();
        if version >= super::MAX_VERSION - 1 {
            return Err(crate::Error::VersionExhausted {
                extent: self.extent,
            });
        }
        let next = change.apply(self.extent, fields)?;
        Ok(Snapshot::from_packed(
            self.extent,
            Packed::pack(version + 2, &next),
        ))
    }

    /// The snapshot of `extent` whose record is `packed` (an even header).
    #[inline]
    pub(crate) const fn from_packed(extent: ExtentId, packed: Packed) -> Snapshot {
        Snapshot { extent, packed }
    }

    /// The record's words, as the table stores them.
    #[inline]
    pub(crate) const fn packed(&self) -> Packed {
        self.packed
    }

    /// The extent.
    pub const fn extent(&self) -> ExtentId {
        self.extent
    }
    /// The version: even, bumped by 2 per committed transition.
    pub const fn version(&self) -> u64 {
        self.packed.version()
    }
    /// The lifecycle state.
    pub const fn state(&self) -> State {
        self.packed.state()
    }
    /// Whether a write is in flight (its bytes are not served until it commits).
    pub const fn write_pending(&self) -> bool {
        self.packed.write_pending()
    }
    /// The content generation of the committed bytes.
    pub const fn generation(&self) -> u64 {
        self.packed.generation()
    }
    /// Where the committed bytes live.
    pub const fn location(&self) -> Location {
        self.packed.location()
    }
    /// The identity-bound checksum of the committed bytes.
    pub const fn checksum(&self) -> u32 {
        self.packed.checksum()
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
        matches!(self.packed.state(), State::Durable | State::Compacting)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn at(version: u64, state: State, generation: u64, offset: u64, crc: u32) -> Snapshot {
        let location = Location::new(3, offset, 4096);
        Snapshot::recovered(ExtentId(7), version, state, generation, location, crc)
    }

    #[test]
    fn packed_snapshots_decode_their_fields_and_compare_as_the_fields_do() {
        // Defect: a snapshot held as packed words decoding a field from the wrong
        // bits, or two snapshots of different records comparing (or hashing) equal.
        let s = at(42, State::Compacting, (1 << 48) - 1, 1 << 40, 0xDEAD_BEEF);
        assert_eq!(s.extent(), ExtentId(7));
        assert_eq!(s.version(), 42);
        assert_eq!(s.state(), State::Compacting);
        assert!(!s.write_pending());
        assert_eq!(s.generation(), (1 << 48) - 1);
        assert_eq!(s.location(), Location::new(3, 1 << 40, 4096));
        assert_eq!(s.checksum(), 0xDEAD_BEEF);
        assert!(s.is_readable());
        let variants = [
            s,
            at(44, State::Compacting, (1 << 48) - 1, 1 << 40, 0xDEAD_BEEF),
            at(42, State::Durable, (1 << 48) - 1, 1 << 40, 0xDEAD_BEEF),
            at(42, State::Compacting, 5, 1 << 40, 0xDEAD_BEEF),
            at(42, State::Compacting, (1 << 48) - 1, 8, 0xDEAD_BEEF),
            at(42, State::Compacting, (1 << 48) - 1, 1 << 40, 1),
        ];
        let distinct: HashSet<Snapshot> = variants.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            variants.len(),
            "each field tells them apart"
        );
        assert_eq!(
            s,
            at(42, State::Compacting, (1 << 48) - 1, 1 << 40, 0xDEAD_BEEF)
        );
        let vacant = Snapshot::vacant(ExtentId(7));
        assert_eq!(
            (vacant.version(), vacant.state(), vacant.generation()),
            (0, State::Vacant, 0)
        );
        assert!(format!("{s:?}").contains("generation: 281474976710655"));
    }
}
