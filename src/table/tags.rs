//! The tags of records, beside the table: only tagged records cost memory.
//!
//! Not in the seqlock words: a snapshot stays four words, the read path never
//! touches tags, and an untagged store pays nothing. A tag is keyed by its
//! record's extent *and content generation*, which makes reading a record with
//! its tag a check rather than a second protocol:
//!
//! * a write sets its tag (at the generation it proposes) before its record is
//!   journaled, so before the transition that commits it;
//! * the tag of the generation it replaced is dropped only after that commit, and
//!   a delete drops its generation's tag only after the record is `Vacant`;
//! * so a tag of a committed generation is present from before the commit until
//!   after the next commit or delete, and a reader that sees the same generation
//!   and state before and after its lookup read the tag of that record
//!   ([`Core::tagged`](crate::protocol::Core::tagged)).
//!
//! Bounded by the tagged records, plus one per write or delete in flight.

use crate::record::{ExtentId, Tag};
use std::collections::HashMap;
// parking_lot's even under loom: tags order nothing the loom models check (the
// table's transitions publish the records; the set and drop above are ordered by
// this lock and by those transitions' release and acquire).
use parking_lot::Mutex;

/// Shards of the map: spreads the writers of unrelated extents.
const SHARDS: usize = 16;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Tags {
    shards: Box<[Mutex<Shard>]>,
}

/// Tags by (extent, generation).
type Shard = HashMap<(u64, u64), Tag>;

impl Default for Tags {
    fn default() -> Self {
        Tags {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl Tags {
    fn shard(&self, id: ExtentId) -> &Mutex<Shard> {
        // Ids are often dense: a multiply spreads neighbours over the shards.
        let h = id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60;
        &self.shards[h as usize % SHARDS]
    }

    /// `id` at `generation` carries `tag` (an empty tag drops any other: a
    /// write that did not commit may have left one at the generation a later
    /// untagged write proposes).
    pub(crate) fn set(&self, id: ExtentId, generation: u64, tag: Tag) {
        let mut shard = self.shard(id).lock();
        if tag.is_empty() {
            shard.remove(&(id.0, generation));
        } else {
            shard.insert((id.0, generation), tag);
        }
    }

    /// The tag of `id` at `generation` (empty if none).
    pub(crate) fn get(&self, id: ExtentId, generation: u64) -> Tag {
        (self.shard(id).lock())
            .get(&(id.0, generation))
            .copied()
            .unwrap_or(Tag::EMPTY)
    }

    /// Drops the tag of `id` at `generation`, returning it.
    pub(crate) fn forget(&self, id: ExtentId, generation: u64) -> Tag {
        (self.shard(id).lock())
            .remove(&(id.0, generation))
            .unwrap_or(Tag::EMPTY)
    }

    /// Drops the tag a write of `id` that did not commit set at the
    /// generation it proposed. Call it while the write's pending mark holds:
    /// no other write proposes that generation then, so the tag dropped is
    /// that write's (tags stay bounded by the tagged records plus the writes
    /// in flight).
    pub(crate) fn forget_proposed(&self, table: &super::ExtentTable, id: ExtentId) {
        if let Ok(pending) = table.snapshot(id)
            && pending.write_pending()
        {
            self.forget(id, pending.generation().saturating_add(1));
        }
    }

    /// Tags held.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_belongs_to_one_generation() {
        let tags = Tags::default();
        let id = ExtentId(7);
        let t3 = Tag::new(b"extent 7 gen 3").expect("short");
        let t4 = Tag::new(b"extent 7 gen 4").expect("short");
        tags.set(id, 3, t3);
        tags.set(id, 4, t4);
        assert_eq!((tags.get(id, 3), tags.get(id, 4)), (t3, t4));
        assert_eq!(tags.get(ExtentId(8), 3), Tag::EMPTY);
        assert_eq!(tags.forget(id, 3), t3);
        assert_eq!(tags.get(id, 3), Tag::EMPTY);
        // An untagged proposal of generation 4 clears what a failed one left.
        tags.set(id, 4, Tag::EMPTY);
        assert_eq!((tags.get(id, 4), tags.len()), (Tag::EMPTY, 0));
    }
}
