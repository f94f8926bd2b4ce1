//! The engine's own key for a record: small opaque bytes stored with it.

use crate::error::{Error, Result};
use std::fmt;

/// At most this many bytes in a [`Tag`]: room for a 256-bit hash, or a key and
/// a sequence number. A tag rides in every journal record and checkpoint frame,
/// whose size the torn-tail scan bounds, so it stays small.
pub const MAX_TAG_LEN: usize = 32;

/// Up to [`MAX_TAG_LEN`] opaque bytes an engine stores with a record: its own key
/// for the extent (a content hash, a user key). Set by
/// [`Store::write_tagged`](crate::Store::write_tagged) and the tagged batch,
/// durable with the record (journaled with it, kept in checkpoints), returned by
/// [`Store::snapshot_tagged`](crate::Store::snapshot_tagged) and
/// [`Store::records_tagged`](crate::Store::records_tagged), and carried by
/// [`Event::Written`](crate::events::Event::Written) and
/// [`Event::Deleted`](crate::events::Event::Deleted). So an engine can rebuild
/// its index at open from tags alone, without reading a byte of data.
///
/// A tag belongs to one content generation: a write sets it (an untagged write
/// leaves an empty tag), relocation and quarantine keep it, a delete drops it.
///
/// # Examples
///
/// ```
/// use extentmeta::Tag;
///
/// let tag = Tag::new(b"blob:9f86d081")?;
/// assert_eq!(tag.as_bytes(), b"blob:9f86d081");
/// assert!(Tag::new(&[0u8; 33]).is_err());
/// assert!(Tag::EMPTY.is_empty());
/// # Ok::<(), extentmeta::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tag {
    len: u8,
    bytes: [u8; MAX_TAG_LEN],
}

impl Tag {
    /// The empty tag: what an untagged record carries.
    pub const EMPTY: Tag = Tag {
        len: 0,
        bytes: [0; MAX_TAG_LEN],
    };

    /// A tag holding `bytes`.
    ///
    /// # Errors
    ///
    /// [`Error::TagTooLong`] past [`MAX_TAG_LEN`] bytes.
    pub fn new(bytes: &[u8]) -> Result<Tag> {
        if bytes.len() > MAX_TAG_LEN {
            return Err(Error::TagTooLong {
                len: bytes.len(),
                max: MAX_TAG_LEN,
            });
        }
        let mut tag = Tag::EMPTY;
        tag.bytes[..bytes.len()].copy_from_slice(bytes);
        tag.len = bytes.len() as u8;
        Ok(tag)
    }

    /// The tag's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Whether the tag holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes in the tag.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.as_bytes()) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => write!(f, "Tag({s:?})"),
            _ => write!(f, "Tag({:02x?})", self.as_bytes()),
        }
    }
}

impl TryFrom<&[u8]> for Tag {
    type Error = Error;
    fn try_from(bytes: &[u8]) -> Result<Tag> {
        Tag::new(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_keeps_exactly_its_bytes() {
        for len in [0, 1, 17, MAX_TAG_LEN] {
            let bytes: Vec<u8> = (0..len as u8).map(|i| i ^ 0x5a).collect();
            let tag = Tag::new(&bytes).expect("within the bound");
            assert_eq!(tag.as_bytes(), &bytes[..]);
            assert_eq!(tag.len(), len);
            assert_eq!(tag.is_empty(), len == 0);
        }
        let err = Tag::new(&[7; MAX_TAG_LEN + 1]).expect_err("one byte too many");
        assert!(matches!(err, Error::TagTooLong { len: 33, max: 32 }));
        // Equal bytes are equal tags whatever was in the unused tail before.
        assert_eq!(Tag::new(b"ab").ok(), Tag::new(b"ab").ok());
        assert_ne!(Tag::new(b"ab").ok(), Tag::new(b"ab\0").ok());
    }
}
