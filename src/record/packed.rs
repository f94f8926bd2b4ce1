//! The bit layout of a record: four 64-bit words, 32 bytes.
//!
//! | word | bits | field |
//! |---|---|---|
//! | header | 63..8 | version (even = stable, odd = publishing) |
//! | header | 2 | `write_pending` |
//! | header | 1..0 | [`State`] |
//! | 1 | 63..48 | device |
//! | 1 | 47..0 | content generation |
//! | 2 | 63..0 | offset |
//! | 3 | 63..32 | checksum |
//! | 3 | 31..0 | length |
//!
//! The version and the state share the header word, so the state a reader sees is
//! always the one published with that version.

use super::transition::Fields;
use super::{Location, MAX_GENERATION, State};

const VERSION_SHIFT: u32 = 8;
const PENDING_BIT: u64 = 1 << 2;
const STATE_MASK: u64 = 0b11;
const GENERATION_MASK: u64 = MAX_GENERATION;
const DEVICE_SHIFT: u32 = 48;

const _: () = assert!(super::MAX_VERSION == u64::MAX >> VERSION_SHIFT);
const _: () = assert!(GENERATION_MASK.count_ones() == DEVICE_SHIFT);

/// A record as the four words the table stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Packed {
    pub(crate) header: u64,
    pub(crate) words: [u64; 3],
}

impl Packed {
    /// The version stored in a header word.
    #[inline]
    pub(crate) const fn version_of(header: u64) -> u64 {
        header >> VERSION_SHIFT
    }

    /// `header` with its version replaced by `version`, flags kept.
    #[inline]
    pub(crate) const fn with_version(header: u64, version: u64) -> u64 {
        (version << VERSION_SHIFT) | (header & ((1 << VERSION_SHIFT) - 1))
    }

    /// Packs `fields` at `version`.
    pub(crate) fn pack(version: u64, f: &Fields) -> Packed {
        debug_assert!(f.generation <= MAX_GENERATION, "generation out of range");
        debug_assert!(version <= super::MAX_VERSION, "version out of range");
        let header = (version << VERSION_SHIFT)
            | if f.write_pending { PENDING_BIT } else { 0 }
            | f.state as u64;
        Packed {
            header,
            words: [
                (u64::from(f.location.device) << DEVICE_SHIFT) | f.generation,
                f.location.offset,
                (u64::from(f.checksum) << 32) | u64::from(f.location.length),
            ],
        }
    }

    /// The version and fields these words hold.
    #[inline]
    pub(crate) fn unpack(&self) -> (u64, Fields) {
        let [w1, w2, w3] = self.words;
        let fields = Fields {
            state: State::from_bits(self.header & STATE_MASK),
            write_pending: self.header & PENDING_BIT != 0,
            generation: w1 & GENERATION_MASK,
            location: Location {
                device: (w1 >> DEVICE_SHIFT) as u16,
                offset: w2,
                length: w3 as u32,
            },
            checksum: (w3 >> 32) as u32,
        };
        (Self::version_of(self.header), fields)
    }
}
