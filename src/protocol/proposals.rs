//! The records handed to the journal whose transitions are not made yet.

use crate::journal::Entry;
use crate::record::{ExtentId, Snapshot, Tag};
use crate::sync::Mutex;
use std::collections::HashMap;

/// Records a write or delete handed to the journal and has not committed in the
/// table yet (it commits only once the record is durable): a checkpoint taken
/// meanwhile must hold them, or it would drop a durable record when it replaces
/// the journal that holds it. One per extent at most (the pending mark is
/// exclusive); bounded by the writes and deletes in flight.
#[derive(Debug)]
pub(crate) struct Proposals {
    /// Per extent: the proposal, and whether an image has read it.
    records: Mutex<HashMap<u64, (Entry, bool)>>,
}

impl Default for Proposals {
    fn default() -> Self {
        Proposals {
            records: Mutex::new(HashMap::new()),
        }
    }
}

impl Proposals {
    /// `record`, tagged `tag`, is on its way to the journal (replacing an
    /// earlier proposal of the same extent).
    pub(crate) fn insert(&self, record: &Snapshot, tag: Tag) {
        self.insert_all(&[(*record, tag)]);
    }

    /// A batch's records, each tagged, on their way to the journal in one
    /// append: inserted under one hold of the lock, so that a checkpoint's
    /// image holds all of them or none (recovery applies a batch whole; an
    /// image holding part of one would keep that part if the append then
    /// failed).
    pub(crate) fn insert_all(&self, records: &[(Snapshot, Tag)]) {
        let mut held = self.records.lock();
        for (record, tag) in records {
            let read = held.get(&record.extent().0).is_some_and(|(_, read)| *read);
            held.insert(record.extent().0, (Entry::propose(record, *tag), read));
        }
    }

    /// Removes the proposals of a batch the journal refused, under one hold
    /// of the lock (as [`insert_all`](Self::insert_all) made them): whether
    /// an image read them (then all of them), as [`withdraw`](Self::withdraw).
    pub(crate) fn withdraw_all(&self, ids: impl IntoIterator<Item = ExtentId>) -> bool {
        let mut held = self.records.lock();
        let mut read = false;
        for id in ids {
            read |= held.remove(&id.0).is_some_and(|(_, read)| read);
        }
        read
    }

    /// `id`'s proposal committed in the table, or will not commit.
    pub(crate) fn remove(&self, id: ExtentId) {
        self.records.lock().remove(&id.0);
    }

    /// Removes `id`'s proposal, which the journal refused: whether an image
    /// read it first. If one did, a checkpoint may hold the record although the
    /// journal never did (a checkpoint runs beside the operations), so the
    /// operation's outcome is unknown, not certainly nothing.
    pub(crate) fn withdraw(&self, id: ExtentId) -> bool {
        self.withdraw_all([id])
    }

    /// Every proposal, each marked read.
    pub(super) fn entries(&self) -> Vec<Entry> {
        let mut records = self.records.lock();
        (records.values_mut())
            .map(|(entry, read)| {
                *read = true;
                entry.clone()
            })
            .collect()
    }
}
