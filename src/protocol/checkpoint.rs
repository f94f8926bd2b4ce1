//! A checkpoint's content, read from the live state: as one image (the
//! emulator's checkpoints, backups) or entry by entry, which a store's
//! checkpointer encodes into the file a chunk at a time without holding an
//! image of the whole table (about 150 bytes per extent beside the table's 32).
//! Both read the state the same way, here.

use super::Core;
use crate::journal::{Entry, Image, RecordImage, Records};
use std::collections::BTreeMap;

impl Core {
    /// The live durable state: every committed record and every proposed one,
    /// the bad list, the degraded devices (a checkpoint's content), as
    /// [`each_image_entry`](Self::each_image_entry) reads it.
    pub(crate) fn image(&self) -> Image {
        let mut records = Vec::new();
        let mut image = Image::default();
        let read = self.each_image_entry::<std::convert::Infallible>(&mut |entry| {
            match entry {
                Entry::Put(r) => records.push(*r),
                Entry::Proposed(r) => {
                    records.push(*r);
                    image.proposed.insert(r.extent.0);
                }
                e => image.apply(e),
            }
            Ok(())
        });
        let Ok(()) = read;
        // Ids ascend, one record each: one sorted list (a checkpoint of
        // millions of records, taken while writes go on, allocates it at
        // once rather than a map's node per few records).
        image.records = Records::from_list(records);
        image
    }

    /// Passes the live durable state to `each`: every record by ascending id
    /// (a commit as [`Entry::Put`], a proposal as [`Entry::Proposed`]), then
    /// every bad location and degraded device. Stops at `each`'s first error.
    ///
    /// The proposals are read first, then the table: a proposal removed
    /// before this read was committed before its removal, so the table read
    /// after shows it (the registry's lock orders the removal before this
    /// read). The table is read as `each` takes its records, while writes go
    /// on: a record read later is newer, and its own journal entry follows the
    /// switch this checkpoint was taken after, so recovery replays it either
    /// way.
    pub(crate) fn each_image_entry<E>(
        &self,
        each: &mut dyn FnMut(&Entry) -> Result<(), E>,
    ) -> Result<(), E> {
        let early = (!self.mutants.image_table_first).then(|| self.proposals.entries());
        // A tag is present from before its generation commits until after the
        // next commit (`table::Tags`), so this finds it unless a newer
        // generation committed meanwhile; that one's proposal is in
        // `proposals` or was journaled after this image's journal began, and
        // replaces this record in a recovery either way.
        let table = (self.table.allocated_ids(0))
            .filter_map(|id| self.table.snapshot_waiting(id).ok())
            .filter(|s| s.version() > 0)
            .map(|s| RecordImage::of(&s, self.tag_of(&s)));
        match early {
            Some(proposals) => merge(table, proposals, each)?,
            // The mutant reads the whole table before the proposals.
            None => {
                let table: Vec<RecordImage> = table.collect();
                merge(table.into_iter(), self.proposals.entries(), each)?;
            }
        }
        for l in self.allocator.bad_locations() {
            each(&Entry::Bad(l))?;
        }
        for d in self.allocator.lasting_degraded() {
            each(&Entry::Degraded(d))?;
        }
        Ok(())
    }
}

/// The records of `table` (ascending ids, one each) with `proposals` applied
/// as recovery applies them ([`Image::apply`]: the newer version wins, a
/// proposal over the pending record the table shows, the table's record over
/// a proposal it has already committed), passed to `each` by ascending id. A
/// proposal's entry that is not a record follows them.
fn merge<E>(
    table: impl Iterator<Item = RecordImage>,
    proposals: Vec<Entry>,
    each: &mut dyn FnMut(&Entry) -> Result<(), E>,
) -> Result<(), E> {
    let mut by_id: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
    let mut other = Vec::new();
    for entry in proposals {
        match entry.record() {
            Some((r, _)) => by_id.entry(r.extent.0).or_default().push(entry),
            None => other.push(entry),
        }
    }
    let mut pending = by_id.into_iter().peekable();
    for record in table {
        let id = record.extent.0;
        while let Some((proposed, entries)) = pending.next_if(|(p, _)| *p < id) {
            applied(proposed, None, &entries, each)?;
        }
        match pending.next_if(|(p, _)| *p == id) {
            Some((_, entries)) => applied(id, Some(record), &entries, each)?,
            None => each(&Entry::Put(record))?,
        }
    }
    for (proposed, entries) in pending {
        applied(proposed, None, &entries, each)?;
    }
    other.iter().try_for_each(each)
}

/// Extent `id`'s record once `entries` are applied on top of `record` (the
/// table's): what [`Image::apply`] makes of them, passed to `each`.
fn applied<E>(
    id: u64,
    record: Option<RecordImage>,
    entries: &[Entry],
    each: &mut dyn FnMut(&Entry) -> Result<(), E>,
) -> Result<(), E> {
    let mut one = Image::default();
    if let Some(r) = record {
        one.apply(&Entry::Put(r));
    }
    for entry in entries {
        one.apply(entry);
    }
    match one.records.get(id) {
        Some(r) if one.proposed.contains(&id) => each(&Entry::Proposed(r)),
        Some(r) => each(&Entry::Put(r)),
        None => Ok(()),
    }
}
