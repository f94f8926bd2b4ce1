//! The `CURRENT` pointer: which checkpoint recovery starts from.
//!
//! ```text
//! magic "EXTMCURR" | format u32 | checkpoint u64 | crc32c u32   (24 bytes)
//! ```
//!
//! It is only ever replaced whole (temp file, sync, rename, directory sync), so a
//! pointer that fails its check was damaged after the fact: corruption, not a tear.

use super::FORMAT_VERSION;
use crate::error::{Error, Result};

const MAGIC: [u8; 8] = *b"EXTMCURR";
const LEN: usize = 24;

/// The pointer naming checkpoint `number`.
pub(crate) fn encode_pointer(number: u64) -> [u8; LEN] {
    let mut p = [0u8; LEN];
    p[0..8].copy_from_slice(&MAGIC);
    p[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    p[12..20].copy_from_slice(&number.to_le_bytes());
    let crc = crc32c::crc32c(&p[..20]);
    p[20..24].copy_from_slice(&crc.to_le_bytes());
    p
}

/// The format a valid pointer (one [`decode_pointer`] accepted) was written in.
pub(crate) fn pointer_format(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]])
}

/// The checkpoint number a pointer names.
///
/// # Errors
///
/// [`Error::NewerFormat`] for a newer format; [`Error::CheckpointCorrupt`] (file
/// `CURRENT`) for anything else that is not a valid pointer.
pub(crate) fn decode_pointer(bytes: &[u8]) -> Result<u64> {
    let corrupt = |reason| Error::CheckpointCorrupt {
        file: super::files::CURRENT.to_string(),
        reason,
    };
    if bytes.len() < 12 || bytes[0..8] != MAGIC {
        return Err(corrupt("not a pointer file"));
    }
    let format = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let crc_ok = bytes.len() == LEN
        && u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]])
            == crc32c::crc32c(&bytes[..20]);
    // A number past any format a later build could write, with a CRC that
    // fails, is a damaged pointer (a flipped bit), not a newer build's.
    if format > FORMAT_VERSION + super::frame::NEWER_FORMATS && !crc_ok {
        return Err(corrupt("the pointer fails its checksum"));
    }
    if format > FORMAT_VERSION {
        return Err(Error::NewerFormat {
            file: super::files::CURRENT.to_string(),
            found: format,
            supported: FORMAT_VERSION,
        });
    }
    if bytes.len() != LEN {
        return Err(corrupt("the pointer has the wrong length"));
    }
    let crc = u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    if crc != crc32c::crc32c(&bytes[..20]) {
        return Err(corrupt("the pointer fails its checksum"));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[12..20]);
    let number = u64::from_le_bytes(n);
    // A store rotating every millisecond would take 10^8 years to get here;
    // past it, the numbers of the files after it could overflow.
    if number > MAX_NUMBER {
        return Err(corrupt(
            "the pointer names a checkpoint past any a store reaches",
        ));
    }
    Ok(number)
}

/// The largest checkpoint number a pointer may name (see `decode_pointer`).
pub(crate) const MAX_NUMBER: u64 = 1 << 62;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A pointer naming a checkpoint past any a store reaches is damage (a
    /// valid CRC is no proof against a crafted file): the files after it
    /// would be numbered past `u64::MAX`.
    #[test]
    fn a_pointer_past_any_checkpoint_number_is_refused() {
        assert_eq!(
            decode_pointer(&encode_pointer(MAX_NUMBER)).ok(),
            Some(MAX_NUMBER)
        );
        for n in [MAX_NUMBER + 1, u64::MAX] {
            let err = decode_pointer(&encode_pointer(n)).map(|_| ()).unwrap_err();
            assert_eq!(err.code(), "FPRE022");
        }
    }
}
