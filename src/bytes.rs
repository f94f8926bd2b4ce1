//! Immutable, cheaply cloned extent bytes.

use std::fmt;
use std::ops::Deref;
// std's Arc even under loom: only immutable bytes are shared through it; the
// synchronisation that publishes them is the cache's and the table's, which loom sees.
use std::sync::Arc;

/// The bytes of one extent at one content generation: immutable, shared by the
/// cache and every reader (a clone is a reference-count increment).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Bytes(Arc<[u8]>);

impl Bytes {
    /// `len` zero bytes, to be filled through [`Bytes::make_mut`] before sharing:
    /// how an engine builds a large value in place and hands it to
    /// [`Store::write_bytes`](crate::Store::write_bytes) without a second copy.
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::Bytes;
    ///
    /// let mut value = Bytes::zeroed(4096);
    /// let buf = value.make_mut().expect("the only handle");
    /// buf[..7].copy_from_slice(b"extent1");
    /// assert_eq!(&value[..7], b"extent1");
    /// ```
    pub fn zeroed(len: usize) -> Bytes {
        // Collecting an exact-size iterator allocates the `Arc` once, no copy.
        Bytes(std::iter::repeat_n(0u8, len).collect())
    }

    /// Mutable access while this is the only handle (always, before sharing);
    /// `None` once it is shared.
    pub fn make_mut(&mut self) -> Option<&mut [u8]> {
        Arc::get_mut(&mut self.0)
    }

    /// The bytes as a slice.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes(v.into())
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Bytes {
        Bytes(v.into())
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = &self.0[..self.0.len().min(16)];
        write!(f, "Bytes(len={}, head={head:02x?})", self.0.len())
    }
}

/// Zero-copy: the `bytes::Bytes` owns this handle (a reference count), so an engine
/// that speaks `bytes` gets the cached bytes without a copy.
#[cfg(feature = "bytes")]
impl From<Bytes> for bytes::Bytes {
    fn from(b: Bytes) -> bytes::Bytes {
        bytes::Bytes::from_owner(b)
    }
}

/// Copies once: the crate's bytes live in one allocation with their reference
/// count. Writes take `&[u8]`, so pass `&b[..]` to write a `bytes::Bytes` without
/// converting it.
#[cfg(feature = "bytes")]
impl From<bytes::Bytes> for Bytes {
    fn from(b: bytes::Bytes) -> Bytes {
        Bytes::from(&b[..])
    }
}

#[cfg(all(test, feature = "bytes"))]
mod bytes_tests {
    use super::Bytes;

    #[test]
    fn conversion_to_bytes_bytes_does_not_copy() {
        let ours = Bytes::from(&b"extent 7 generation 3"[..]);
        let at = ours.as_ptr();
        let theirs: bytes::Bytes = ours.clone().into();
        assert_eq!(theirs.as_ptr(), at, "same allocation");
        assert_eq!(&theirs[..], &ours[..]);
        let back: Bytes = theirs.slice(9..21).into();
        assert_eq!(&back[..], b"generation 3");
    }
}
