//! The hasher of extent ids for the cache's maps: one folded multiply.

use crate::record::ExtentId;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes extent ids with one folded multiply. Ids are chosen by the engine, not by
/// an adversary, so SipHash's DoS resistance buys nothing here and costs a third of
/// the hit path (measured in `benches/cache.rs`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        let product = u128::from(n ^ self.0) * 0x9E37_79B9_7F4A_7C15_u128;
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by extent id, hashed with [`IdHasher`].
pub(crate) type IdMap<V> = HashMap<ExtentId, V, BuildHasherDefault<IdHasher>>;
