//! The identity-bound checksum.

use super::ExtentId;

/// CRC32C of `bytes`, seeded with the extent id and content generation.
///
/// Binding the checksum to identity means a block written to the wrong place
/// (misdirected) or an old generation left at a location fails verification even
/// though its bytes are intact.
///
/// # Examples
///
/// ```
/// use extentmeta::{checksum, ExtentId};
/// let a = checksum(ExtentId(1), 1, b"same bytes");
/// assert_ne!(a, checksum(ExtentId(2), 1, b"same bytes"), "other extent");
/// assert_ne!(a, checksum(ExtentId(1), 2, b"same bytes"), "other generation");
/// ```
pub fn checksum(extent: ExtentId, generation: u64, bytes: &[u8]) -> u32 {
    let mut seed = [0u8; 16];
    seed[..8].copy_from_slice(&extent.0.to_le_bytes());
    seed[8..].copy_from_slice(&generation.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&seed), bytes)
}
