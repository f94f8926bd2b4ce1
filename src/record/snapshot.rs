//! The `Copy` view of one record at one version.

use super::packed::Packed;
use super::transition::Fields;
use super::{Change, ExtentId, Location, MAX_GENERATION, MAX_VERSION, State};
use crate::error::{Error, Result};

/// The first bytes of [`Snapshot::to_bytes`]' encoding: its name and format.
const MAGIC: [u8; 4] = *b"EMS1";

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

    /// A record as an engine's manifest kept its fields, for
    /// [`Store::with_records`](crate::Store::with_records): the record a store
    /// committed with them (no write pending).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRecords`] (FPRE039) for a version that is odd (a record
    /// being published: never committed) or past [`MAX_VERSION`](crate::record::MAX_VERSION),
    /// or a generation past [`MAX_GENERATION`](crate::record::MAX_GENERATION).
    /// Locations are checked against the store's devices by `with_records`.
    pub fn committed(
        extent: ExtentId,
        version: u64,
        state: State,
        generation: u64,
        location: Location,
        checksum: u32,
    ) -> Result<Snapshot> {
        Self::checked(
            extent, version, state, false, generation, location, checksum,
        )
    }

    /// The record with these fields, once they are in range.
    fn checked(
        extent: ExtentId,
        version: u64,
        state: State,
        write_pending: bool,
        generation: u64,
        location: Location,
        checksum: u32,
    ) -> Result<Snapshot> {
        let bad = |what: String| Error::InvalidRecords {
            reason: format!("{extent}: {what}"),
        };
        if version % 2 == 1 || version > MAX_VERSION {
            return Err(bad(format!(
                "version {version} is odd or past {MAX_VERSION}: no committed record has it"
            )));
        }
        if generation > MAX_GENERATION {
            return Err(bad(format!(
                "generation {generation} is past {MAX_GENERATION}"
            )));
        }
        // Version 0 is the record of an id never written: vacant, as every id
        // starts (`with_records` skips it, so another state would drop a record
        // silently and free its location).
        if version == 0 && state != State::Vacant {
            return Err(bad(format!(
                "version 0 is an id never written, which is vacant, not {state:?}"
            )));
        }
        let fields = Fields {
            state,
            write_pending,
            generation,
            location,
            checksum,
        };
        Ok(Snapshot::from_packed(
            extent,
            Packed::pack(version, &fields),
        ))
    }

    /// Bytes of [`to_bytes`](Self::to_bytes)' encoding.
    pub const ENCODED_LEN: usize = 52;

    /// This record in a stable encoding of [`ENCODED_LEN`](Self::ENCODED_LEN)
    /// bytes, for an engine's manifest: [`from_bytes`](Self::from_bytes) gives it
    /// back, in this and every later release (a later format gets another
    /// name in its first four bytes, and this one stays readable).
    ///
    /// Layout, little-endian: `EMS1`, extent, version, generation, offset
    /// (8 bytes each), length, checksum (4 each), device (2), state (1: 0
    /// vacant, 1 durable, 2 compacting, 3 quarantined), flags (1: bit 0, a write
    /// pending), then the CRC32C of the 48 bytes before it.
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::{ExtentId, MemBackend, Snapshot, Store, StoreConfig};
    ///
    /// let store = Store::new(MemBackend::new(1), StoreConfig::default())?;
    /// let record = store.write(ExtentId(7), b"extent 7, generation 1")?;
    /// let bytes = record.to_bytes(); // what the engine's manifest keeps
    /// assert_eq!(Snapshot::from_bytes(&bytes)?, record);
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn to_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        let location = self.location();
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&MAGIC);
        put(&self.extent.0.to_le_bytes());
        put(&self.version().to_le_bytes());
        put(&self.generation().to_le_bytes());
        put(&location.offset.to_le_bytes());
        put(&location.length.to_le_bytes());
        put(&self.checksum().to_le_bytes());
        put(&location.device.to_le_bytes());
        put(&[self.state() as u8, u8::from(self.write_pending())]);
        let crc = crc32c::crc32c(&out[..Self::ENCODED_LEN - 4]);
        out[Self::ENCODED_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The record [`to_bytes`](Self::to_bytes) encoded.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRecords`] (FPRE039) for bytes of another length or
    /// another encoding, a CRC that does not match (damage), an unknown state
    /// or flag, or the fields [`committed`](Self::committed) refuses.
    pub fn from_bytes(bytes: &[u8]) -> Result<Snapshot> {
        let bad = |what: &str| Error::InvalidRecords {
            reason: format!("a record's encoding {what}"),
        };
        let Ok(bytes) = <&[u8; Self::ENCODED_LEN]>::try_from(bytes) else {
            return Err(bad(&format!(
                "is {} bytes long, not {}",
                bytes.len(),
                Self::ENCODED_LEN
            )));
        };
        if bytes[..4] != MAGIC {
            return Err(bad(
                "does not start with EMS1: not a record, or a newer format",
            ));
        }
        let (body, crc) = bytes.split_at(Self::ENCODED_LEN - 4);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err(bad("fails its CRC: the manifest is damaged"));
        }
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&body[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let u32_at = |at: usize| {
            let mut word = [0u8; 4];
            word.copy_from_slice(&body[at..at + 4]);
            u32::from_le_bytes(word)
        };
        let device = u16::from_le_bytes([body[44], body[45]]);
        let (state, flags) = (body[46], body[47]);
        let Some(&state) = State::ALL.get(usize::from(state)) else {
            return Err(bad(&format!("names state {state}, which does not exist")));
        };
        if flags > 1 {
            return Err(bad(&format!("has flags {flags:#x}; only bit 0 exists")));
        }
        let location = Location::new(device, u64_at(28), u32_at(36));
        Self::checked(
            ExtentId(u64_at(4)),
            u64_at(12),
            state,
            flags == 1,
            u64_at(20),
            location,
            u32_at(40),
        )
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

    /// Re-signs an encoding changed by hand, so that only the field check
    /// can refuse it.
    fn resigned(mut bytes: [u8; Snapshot::ENCODED_LEN]) -> [u8; Snapshot::ENCODED_LEN] {
        let n = Snapshot::ENCODED_LEN - 4;
        let crc = crc32c::crc32c(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn the_manifest_encoding_gives_back_every_record_and_refuses_damage() {
        // Defect: an engine's manifest that cannot give the store its records
        // back, or gives back another record than the one it kept.
        let mut records = vec![Snapshot::vacant(ExtentId(0))];
        for (i, state) in State::ALL.into_iter().enumerate() {
            let i = i as u64;
            records.push(at(2 * i + 2, state, i + 1, i << 20, 0xA5A5_0000 + i as u32));
        }
        let far = Location::new(u16::MAX, u64::MAX, u32::MAX);
        let top = MAX_VERSION - 1;
        records.push(Snapshot::recovered(
            ExtentId(u64::MAX),
            top,
            State::Quarantined,
            MAX_GENERATION,
            far,
            u32::MAX,
        ));
        let mut pending = records[2];
        pending.packed.header |= super::super::packed::Packed::pack(
            0,
            &Fields {
                state: State::Vacant,
                write_pending: true,
                generation: 0,
                location: Location::new(0, 0, 0),
                checksum: 0,
            },
        )
        .header;
        assert!(pending.write_pending());
        records.push(pending);
        for record in &records {
            let bytes = record.to_bytes();
            assert_eq!(Snapshot::from_bytes(&bytes).expect("decodes"), *record);
            // Every single flipped bit is seen (CRC32C catches every burst
            // of up to 32 bits).
            for bit in 0..8 * Snapshot::ENCODED_LEN {
                let mut damaged = bytes;
                damaged[bit / 8] ^= 1 << (bit % 8);
                let err = Snapshot::from_bytes(&damaged).expect_err("damage is refused");
                assert_eq!(err.code(), "FPRE039", "{err}");
            }
            assert!(Snapshot::from_bytes(&bytes[..51]).is_err(), "too short");
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert!(Snapshot::from_bytes(&longer).is_err(), "too long");
        }
        // Fields no store commits, with a CRC that matches.
        let good = records[2].to_bytes();
        let mut odd = good;
        odd[12] |= 1;
        let mut state = good;
        state[46] = 4;
        let mut flags = good;
        flags[47] = 2;
        let mut generation = good;
        generation[20..28].copy_from_slice(&(MAX_GENERATION + 1).to_le_bytes());
        for (bytes, what) in [
            (odd, "odd"),
            (state, "state 4"),
            (flags, "flags 0x2"),
            (generation, "past"),
        ] {
            let err = Snapshot::from_bytes(&resigned(bytes)).expect_err(what);
            assert_eq!(err.code(), "FPRE039", "{err}");
            assert!(err.to_string().contains(what), "{err}");
        }
        // The field constructor makes what recovery makes, and checks the same.
        let location = Location::new(3, 1 << 40, 4096);
        assert_eq!(
            Snapshot::committed(ExtentId(7), 42, State::Durable, 5, location, 9).unwrap(),
            Snapshot::recovered(ExtentId(7), 42, State::Durable, 5, location, 9)
        );
        assert!(Snapshot::committed(ExtentId(7), 43, State::Durable, 5, location, 9).is_err());
        assert!(Snapshot::committed(ExtentId(7), 0, State::Durable, 5, location, 9).is_err());
        assert!(Snapshot::committed(ExtentId(7), 0, State::Vacant, 0, location, 0).is_ok());
        assert!(
            Snapshot::committed(
                ExtentId(7),
                42,
                State::Durable,
                MAX_GENERATION + 1,
                location,
                9
            )
            .is_err()
        );
    }
}
