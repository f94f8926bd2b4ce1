//! What the machines' unit tests share: records committed straight through
//! the table, with values that name their extent and generation.

use super::Core;
use crate::bytes::Bytes;
use crate::record::{Change, ExtentId, Snapshot, Tag, checksum};
use crate::space::Placement;

/// The value of generation `g` of `id`: 128 bytes naming both.
pub(crate) fn value(id: ExtentId, g: u64) -> Bytes {
    Bytes::from([id.0.to_le_bytes(), g.to_le_bytes()].concat().repeat(8))
}

/// Commits generation `g` of `id` ([`value`]) at a fresh location with `tag`,
/// forgetting the tag of the generation it replaces, as a write does; its
/// record.
pub(crate) fn commit(core: &Core, id: ExtentId, g: u64, tag: Tag) -> Snapshot {
    let before = core.table.snapshot(id).expect("in range");
    let begin = (core.table)
        .transition(id, before.version(), Change::BeginWrite)
        .expect("begins");
    let bytes = value(id, g);
    let location = (core.allocator)
        .allocate(bytes.len() as u32, Placement::Any)
        .expect("space");
    let change = Change::CommitWrite {
        location,
        checksum: checksum(id, g, &bytes),
    };
    let record = (core.table)
        .transition(id, begin.version(), change)
        .expect("commits");
    core.tags.forget(id, before.generation());
    core.tags.set(id, record.generation(), tag);
    record
}
