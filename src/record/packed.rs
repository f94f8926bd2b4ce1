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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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
    #[inline]
    pub(crate) const fn pack(version: u64, f: &Fields) -> Packed {
        debug_assert!(f.generation <= MAX_GENERATION, "generation out of range");
        debug_assert!(version <= super::MAX_VERSION, "version out of range");
        let header = (version << VERSION_SHIFT)
            | if f.write_pending { PENDING_BIT } else { 0 }
            | f.state as u64;
        Packed {
            header,
            words: [
                ((f.location.device as u64) << DEVICE_SHIFT) | f.generation,
                f.location.offset,
                ((f.checksum as u64) << 32) | f.location.length as u64,
            ],
        }
    }

    /// The version these words hold.
    #[inline]
    pub(crate) const fn version(&self) -> u64 {
        Self::version_of(self.header)
    }

    /// The lifecycle state these words hold.
    #[inline]
    pub(crate) const fn state(&self) -> State {
        State::from_bits(self.header & STATE_MASK)
    }

    /// Whether a write is pending in these words.
    #[inline]
    pub(crate) const fn write_pending(&self) -> bool {
        self.header & PENDING_BIT != 0
    }

    /// The content generation these words hold.
    #[inline]
    pub(crate) const fn generation(&self) -> u64 {
        self.words[0] & GENERATION_MASK
    }

    /// The location these words hold.
    #[inline]
    pub(crate) const fn location(&self) -> Location {
        Location {
            device: (self.words[0] >> DEVICE_SHIFT) as u16,
            offset: self.words[1],
            length: self.words[2] as u32,
        }
    }

    /// The checksum these words hold.
    #[inline]
    pub(crate) const fn checksum(&self) -> u32 {
        (self.words[2] >> 32) as u32
    }

    /// The version and fields these words hold.
    #[inline]
    pub(crate) const fn unpack(&self) -> (u64, Fields) {
        let fields = Fields {
            state: self.state(),
            write_pending: self.write_pending(),
            generation: self.generation(),
            location: self.location(),
            checksum: self.checksum(),
        };
        (self.version(), fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Values over `0..=max`, with the edges drawn often.
    fn edgy(max: u64) -> impl Strategy<Value = u64> {
        prop_oneof![
            1 => Just(0),
            1 => Just(max),
            1 => Just(max - 1),
            1 => Just(max / 2 + 1),
            4 => 0..=max,
        ]
    }

    fn fields() -> impl Strategy<Value = Fields> {
        (
            proptest::sample::select(State::ALL.to_vec()),
            any::<bool>(),
            edgy(MAX_GENERATION),
            edgy(u64::from(u16::MAX)),
            edgy(u64::MAX),
            edgy(u64::from(u32::MAX)),
            edgy(u64::from(u32::MAX)),
        )
            .prop_map(
                |(state, write_pending, generation, device, offset, length, checksum)| Fields {
                    state,
                    write_pending,
                    generation,
                    location: Location {
                        device: device as u16,
                        offset,
                        length: length as u32,
                    },
                    checksum: checksum as u32,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Every field over its whole range, generations up to 2^48 - 1 and versions
        /// up to 2^56 - 1 included, unpacks to exactly what was packed.
        #[test]
        fn pack_unpack_round_trips_every_field_range(
            version in edgy(crate::record::MAX_VERSION),
            f in fields(),
        ) {
            let packed = Packed::pack(version, &f);
            prop_assert_eq!(packed.unpack(), (version, f));
            prop_assert_eq!(Packed::version_of(packed.header), version);
        }

        /// Replacing the version keeps every flag and field word.
        #[test]
        fn with_version_keeps_flags(
            version in edgy(crate::record::MAX_VERSION),
            next in edgy(crate::record::MAX_VERSION),
            f in fields(),
        ) {
            let packed = Packed::pack(version, &f);
            let moved = Packed {
                header: Packed::with_version(packed.header, next),
                words: packed.words,
            };
            prop_assert_eq!(moved.unpack(), (next, f));
        }
    }

    #[test]
    fn max_generation_does_not_bleed_into_device() {
        let f = Fields {
            state: State::Quarantined,
            write_pending: true,
            generation: MAX_GENERATION,
            location: Location {
                device: 0,
                offset: u64::MAX,
                length: 0,
            },
            checksum: 0,
        };
        let (_, back) = Packed::pack(0, &f).unpack();
        assert_eq!(
            back.location.device, 0,
            "generation bits reached the device"
        );
        assert_eq!(back.generation, MAX_GENERATION);
        let g = Fields {
            generation: 0,
            location: Location {
                device: u16::MAX,
                ..f.location
            },
            ..f
        };
        let (_, back) = Packed::pack(0, &g).unpack();
        assert_eq!(back.generation, 0, "device bits reached the generation");
        assert_eq!(back.location.device, u16::MAX);
    }
}
