//! Immutable, cheaply cloned extent bytes.

use std::fmt;
use std::ops::Deref;
// std's Arc even under loom: only immutable bytes are shared through it; the
// synchronisation that publishes them is the cache's and the table's, which loom sees.
use std::sync::{Arc, Weak};

/// The bytes of one extent at one content generation: immutable, shared by the
/// cache and every reader (a clone is a reference-count increment).
///
/// Built without a copy from a `Vec<u8>` (`From<Vec<u8>>`), from a
/// `bytes::Bytes` (`From<bytes::Bytes>`, feature `bytes`), or in place
/// ([`Bytes::zeroed`]); [`Store::write_bytes`](crate::Store::write_bytes) then
/// writes the caller's own buffer. `From<&[u8]>` copies once.
//
// One thin pointer to the owner: the cache stores and clones a handle of one
// word and never looks inside; a reader's deref chases one pointer more than
// an `Arc<[u8]>` would. An enum of owners beside a fat `Arc<[u8]>` (24 bytes)
// made the cache's hit 1.5x slower against quick_cache (`cache` bench,
// `hit-ab`: median 1.62 and 1.74 against 1.08 and 1.11 in the same session).
#[derive(Clone)]
pub struct Bytes(Arc<Owner>);

/// Who owns the bytes.
enum Owner {
    /// A vector, taken as it is (what a read, [`Bytes::zeroed`] and
    /// `From<Vec<u8>>` make).
    Vec(Vec<u8>),
    /// A caller's `bytes::Bytes`, kept as it is.
    #[cfg(feature = "bytes")]
    External(bytes::Bytes),
}

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
        Bytes::from(vec![0u8; len])
    }

    /// Mutable access while this is the only handle (always, before sharing);
    /// `None` once it is shared, and for a `bytes::Bytes` (immutable).
    pub fn make_mut(&mut self) -> Option<&mut [u8]> {
        match Arc::get_mut(&mut self.0)? {
            Owner::Vec(v) => Some(v.as_mut_slice()),
            #[cfg(feature = "bytes")]
            Owner::External(_) => None,
        }
    }

    /// An empty handle with room for `len` bytes, allocated on this thread
    /// now and filled later, on another ([`Bytes::sized`]): where a value's
    /// handle lies is where it was allocated, and every hit touches it (its
    /// reference count), so readahead allocates on the reader's thread in scan
    /// order what its workers then load (`store::hints`).
    pub(crate) fn with_capacity(len: usize) -> Bytes {
        Bytes::from(Vec::with_capacity(len))
    }

    /// An empty handle without room yet: [`make_room`](Self::make_room) gives
    /// it room later. Allocating a run of handles first and their room after
    /// places the handles next to each other (see `store::hints`).
    pub(crate) fn empty() -> Bytes {
        Bytes::from(Vec::new())
    }

    /// Room for `len` bytes in this handle, as
    /// [`with_capacity`](Self::with_capacity) makes it, if the handle is empty,
    /// unshared and without room; otherwise this handle is replaced by one of
    /// its own with that room. The room is exactly `len` bytes in practice
    /// (std promises at least); if it were not, [`sized`](Self::sized) and
    /// [`copied`](Self::copied) would allocate anew rather than use it.
    pub(crate) fn make_room(&mut self, len: usize) {
        if let Some(Owner::Vec(v)) = Arc::get_mut(&mut self.0)
            && v.capacity() == 0
        {
            v.reserve_exact(len);
            return;
        }
        *self = Bytes::with_capacity(len);
    }

    /// `len` zero bytes, to be filled through [`make_mut`](Self::make_mut):
    /// in `buffer` if it is an empty, unshared [`with_capacity`] handle for
    /// exactly `len` bytes, else newly allocated. Exactly: the cache weighs a
    /// value by its length, so a larger buffer would hold memory it does not
    /// count (an extent rewritten shorter after its hint was queued).
    ///
    /// [`with_capacity`]: Self::with_capacity
    pub(crate) fn sized(buffer: Option<Bytes>, len: usize) -> Bytes {
        (buffer.and_then(|b| b.filled(len, |v| v.resize(len, 0))))
            .unwrap_or_else(|| Bytes::zeroed(len))
    }

    /// A copy of `src`, in `buffer` if it can hold it (see [`sized`](Self::sized)).
    pub(crate) fn copied(buffer: Option<Bytes>, src: &[u8]) -> Bytes {
        (buffer.and_then(|b| b.filled(src.len(), |v| v.extend_from_slice(src))))
            .unwrap_or_else(|| Bytes::from(src))
    }

    /// This handle, its `len` bytes written by `fill`, if it is an empty,
    /// unshared vector of exactly `len` bytes' capacity (see
    /// [`sized`](Self::sized)), so that `fill` never reallocates; `None` drops
    /// it.
    fn filled(mut self, len: usize, fill: impl FnOnce(&mut Vec<u8>)) -> Option<Bytes> {
        let Some(Owner::Vec(v)) = Arc::get_mut(&mut self.0) else {
            return None;
        };
        if !v.is_empty() || v.capacity() != len {
            return None;
        }
        fill(v);
        Some(self)
    }

    /// The vector these bytes own, if this is its only handle: how a buffer
    /// that was shared while it was written is taken back to be reused.
    pub(crate) fn into_vec(self) -> Option<Vec<u8>> {
        match Arc::try_unwrap(self.0).ok()? {
            Owner::Vec(v) => Some(v),
            #[cfg(feature = "bytes")]
            Owner::External(_) => None,
        }
    }

    /// A handle that does not keep the bytes: [`WeakBytes::upgrade`] gives them
    /// back while another handle holds them. The buffer is freed with the last
    /// strong handle; only the owner's small header waits for the weak ones.
    pub(crate) fn downgrade(&self) -> WeakBytes {
        WeakBytes(Arc::downgrade(&self.0))
    }

    /// The bytes as a slice.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match &*self.0 {
            Owner::Vec(v) => v,
            #[cfg(feature = "bytes")]
            Owner::External(b) => b,
        }
    }
}

/// See [`Bytes::downgrade`].
#[derive(Clone, Default)]
pub(crate) struct WeakBytes(Weak<Owner>);

impl WeakBytes {
    /// The bytes, if a strong handle still holds them.
    pub(crate) fn upgrade(&self) -> Option<Bytes> {
        self.0.upgrade().map(Bytes)
    }
}

impl fmt::Debug for WeakBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.strong_count() > 0 {
            "WeakBytes(held)"
        } else {
            "WeakBytes(gone)"
        })
    }
}

impl Deref for Bytes {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Bytes {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Bytes {}

impl std::hash::Hash for Bytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

/// No copy: the vector becomes the bytes' owner.
impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes(Arc::new(Owner::Vec(v)))
    }
}

/// One copy.
impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Bytes {
        Bytes::from(v.to_vec())
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.as_slice();
        let head = &bytes[..bytes.len().min(16)];
        write!(f, "Bytes(len={}, head={head:02x?})", bytes.len())
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

/// No copy: the `bytes::Bytes` is kept as it is, so
/// [`Store::write_bytes`](crate::Store::write_bytes) writes an engine's own
/// buffer.
#[cfg(feature = "bytes")]
impl From<bytes::Bytes> for Bytes {
    fn from(b: bytes::Bytes) -> Bytes {
        Bytes(Arc::new(Owner::External(b)))
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
        assert_eq!(back.as_ptr(), at.wrapping_add(9), "kept, not copied");
    }
}

#[cfg(test)]
mod tests {
    use super::Bytes;

    #[test]
    fn a_vector_becomes_bytes_without_a_copy_and_stays_mutable_while_alone() {
        let v = b"extent 9 generation 2".to_vec();
        let at = v.as_ptr();
        let mut bytes = Bytes::from(v);
        assert_eq!(bytes.as_ptr(), at, "same allocation");
        bytes.make_mut().expect("the only handle")[7] = b'8';
        assert_eq!(&bytes[..], b"extent 8 generation 2");
        let shared = bytes.clone();
        assert!(bytes.make_mut().is_none(), "shared now");
        // Equal bytes are equal whoever owns them.
        assert_eq!(shared, Bytes::from(&b"extent 8 generation 2"[..]));
    }

    #[test]
    fn an_empty_handle_is_given_room_in_place_while_alone() {
        let mut handle = Bytes::empty();
        let at = std::sync::Arc::as_ptr(&handle.0);
        handle.make_room(22);
        assert_eq!(std::sync::Arc::as_ptr(&handle.0), at, "the same handle");
        let room = handle.as_ptr();
        let filled = Bytes::copied(Some(handle), b"extent 14 generation 5");
        assert_eq!(&filled[..], b"extent 14 generation 5");
        assert_eq!(filled.as_ptr(), room, "filled in the room reserved");

        // Shared, or given room already: a handle of its own, the other untouched.
        let mut shared = Bytes::empty();
        let other = shared.clone();
        shared.make_room(22);
        assert!(!std::sync::Arc::ptr_eq(&shared.0, &other.0));
        assert_eq!(other.len(), 0);
        let mut twice = Bytes::with_capacity(8);
        let at = std::sync::Arc::as_ptr(&twice.0);
        twice.make_room(22);
        assert_ne!(std::sync::Arc::as_ptr(&twice.0), at);
        assert!(
            twice.filled(22, |_| {}).is_some(),
            "exactly 22 bytes of room"
        );
    }

    #[test]
    fn a_buffer_allocated_ahead_is_filled_in_place_when_it_fits() {
        let value = b"extent 12 generation 4";
        let buffer = Bytes::with_capacity(value.len());
        let at = buffer.as_ptr();
        let filled = Bytes::copied(Some(buffer), value);
        assert_eq!(&filled[..], value);
        assert_eq!(filled.as_ptr(), at, "the buffer allocated ahead");

        let buffer = Bytes::with_capacity(22);
        let at = buffer.as_ptr();
        let mut sized = Bytes::sized(Some(buffer), 22);
        assert_eq!((sized.len(), sized.as_ptr()), (22, at));
        sized.make_mut().expect("alone")[..].copy_from_slice(value);
        assert_eq!(&sized[..], value);

        // Too large (memory the cache would not weigh), too small, shared,
        // or holding a value: not used.
        let len = value.len();
        assert!(Bytes::with_capacity(64).filled(len, |_| {}).is_none());
        assert!(Bytes::with_capacity(8).filled(len, |_| {}).is_none());
        let shared = Bytes::with_capacity(len);
        let _other = shared.clone();
        assert!(shared.filled(len, |_| {}).is_none());
        assert!(
            Bytes::from(b"extent 13 generation 1".to_vec())
                .filled(len, |_| {})
                .is_none()
        );
        assert!(Bytes::with_capacity(len).filled(len, |_| {}).is_some());
        // Then a new allocation, the same bytes.
        let copy = Bytes::copied(Some(Bytes::with_capacity(8)), value);
        assert_eq!(&copy[..], value);
        let zeros = Bytes::sized(Some(Bytes::with_capacity(64)), len);
        assert_eq!(&zeros[..], &[0u8; 22][..]);
    }
}
