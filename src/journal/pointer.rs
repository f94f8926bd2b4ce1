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
    Ok(u64::from_le_bytes(n))
}
