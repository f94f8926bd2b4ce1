//! The change stream's reading side: numbered record changes, a baseline to
//! start from, and holds that keep changes for a slow consumer.

use super::Store;
use crate::error::Result;
use crate::events::{ChangeHold, Event};
use crate::record::{Snapshot, State, Tag};

impl Store {
    /// The number the next record change will get: a consumer that has
    /// applied every change below it reads on with
    /// [`changes_since`](Self::changes_since) this number.
    ///
    /// A durable store reopened in its own directory numbers its changes from
    /// the journal's next entry. A cursor from before the reopen then usually
    /// reads [`Error::ChangesTruncated`](crate::Error::ChangesTruncated) (a
    /// clean close, a rotation, a batch or a quarantine journal entries that
    /// are no changes), but after a crash of a run whose every entry was a
    /// change it stands exactly at the new run's first number, and reads the
    /// new run's changes as its own. A store opened from a backup
    /// ([`checkpoint_to`](Self::checkpoint_to)), or from a directory copied or
    /// rolled back, numbers from about 0, and an in-memory store
    /// ([`Store::new`], [`Store::with_records`]) from 0 each time it is made:
    /// a cursor of another run may then read this run's changes as its own.
    /// So a follower keeps [`change_stream_id`](Self::change_stream_id)
    /// beside its cursor and starts again from
    /// [`change_baseline`](Self::change_baseline) whenever it changes.
    pub fn change_seq(&self) -> u64 {
        self.shared.core.events.changes.next_seq()
    }

    /// The identity of this store's change stream: another for every store
    /// made ([`Store::new`], [`Store::with_records`]) or opened
    /// ([`Store::open`]), random, never 0. A follower keeps it beside its
    /// cursor and starts again from [`change_baseline`](Self::change_baseline)
    /// when it changes: an in-memory store numbers its changes from 0 each
    /// time it is made, and a store opened from a backup or a copied
    /// directory from about 0, so a cursor of another run could otherwise
    /// read the new run's changes as its own. (A durable store reopened in
    /// its own directory gets a new identity too, and its old cursors usually
    /// read [`Error::ChangesTruncated`](crate::Error::ChangesTruncated): not
    /// always, see [`change_seq`](Self::change_seq).)
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::{ExtentId, MemBackend, Store, StoreConfig};
    /// use std::sync::Arc;
    ///
    /// let backend = Arc::new(MemBackend::new(1));
    /// let store = Store::new(Arc::clone(&backend), StoreConfig::default())?;
    /// let (stream, cursor) = (store.change_stream_id(), store.change_seq());
    /// let record = store.write(ExtentId(1), b"before the restart")?;
    /// drop(store);
    /// let store = Store::with_records(backend, StoreConfig::default(), [record])?;
    /// // The same cursor would read this run's first change: the identity
    /// // says it is another stream.
    /// assert_eq!(store.change_seq(), cursor);
    /// assert_ne!(store.change_stream_id(), stream);
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn change_stream_id(&self) -> u64 {
        self.shared.core.events.changes.stream()
    }

    /// The retained record changes numbered `seq` or more, in number order:
    /// every [`Event`] but [`Event::DeviceDegraded`] and
    /// [`Event::LocationRetired`], each carrying its number
    /// ([`Event::seq`]), its committed record and, for writes and deletes, its
    /// tag. Copies at most
    /// [`change_hold_max`](crate::store::StoreConfigBuilder::change_hold_max) events.
    ///
    /// # Applying the stream
    ///
    /// Numbers follow the order changes were retained, not always the order
    /// one extent's changes committed (two threads may number them the other
    /// way round), so a follower applies a change only if its record's
    /// [`version`](Snapshot::version) is higher than the one it holds for the
    /// extent, and keeps the versions of deleted extents (the store keeps a
    /// deleted extent's record too). Applied so, the stream converges to the
    /// store's records whatever the interleaving, as journal replay does. A
    /// follower that needs the bytes of a write reads them with
    /// [`read`](Self::read); if the extent has moved on to a newer generation
    /// (or was deleted), a later change in the stream says so.
    ///
    /// # Errors
    ///
    /// [`Error::ChangesTruncated`](crate::Error::ChangesTruncated) if changes
    /// from `seq` on are no longer retained (retention let them go, or the
    /// store was reopened: the stream is kept in memory), and
    /// [`Error::ChangeSeqAhead`](crate::Error::ChangeSeqAhead) if `seq` is past
    /// [`change_seq`](Self::change_seq). Either way the consumer starts again
    /// from [`change_baseline`](Self::change_baseline).
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::events::Event;
    /// use extentmeta::{ExtentId, MemBackend, Store, StoreConfig, Tag};
    ///
    /// let store = Store::new(MemBackend::new(1), StoreConfig::default())?;
    /// let from = store.change_seq();
    /// store.write_tagged(ExtentId(1), b"v1", Tag::new(b"key-1")?)?;
    /// store.delete(ExtentId(1))?;
    /// let changes = store.changes_since(from)?;
    /// assert!(matches!(&changes[0], Event::Written { tag, .. } if tag.as_bytes() == b"key-1"));
    /// assert!(matches!(&changes[1], Event::Deleted { seq, .. } if *seq == from + 1));
    /// assert_eq!(store.change_seq(), from + 2);
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn changes_since(&self, seq: u64) -> Result<Vec<Event>> {
        self.shared.core.events.changes.since(seq)
    }

    /// Where a consumer starts (or starts again after
    /// [`Error::ChangesTruncated`](crate::Error::ChangesTruncated)): the number
    /// to read [`changes_since`](Self::changes_since) from, and every record
    /// ever written with its tag, **deleted ones included** (`Vacant`, with
    /// their version), in id order.
    ///
    /// The number is taken before the records are read, so every change below
    /// it is reflected in them and a change at or past it may be too: applied
    /// by version (see [`changes_since`](Self::changes_since)) the overlap
    /// changes nothing. The vacant records carry the versions a follower needs
    /// to refuse a write's change that was numbered after the delete that
    /// superseded it.
    ///
    /// A follower starting again replaces what it holds with these records
    /// rather than merging them by version: the records (and the stream) show
    /// what is committed in memory, and on a durable store a few such states
    /// may not survive a crash of it: a compaction's or remap's move, which
    /// commits before it is journaled (the bytes are the same, only the
    /// location differs), and an extent whose write failed with an unknown
    /// outcome (FPRE028), which recovery may find written after all. A
    /// reopened store's stream has another
    /// [`change_stream_id`](Self::change_stream_id), so the follower starts
    /// again from here, and a replaced state holds no version the store no
    /// longer has. (Its cursor alone may not say so: see
    /// [`change_seq`](Self::change_seq).)
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::record::State;
    /// use extentmeta::{ExtentId, MemBackend, Store, StoreConfig};
    ///
    /// let store = Store::new(MemBackend::new(1), StoreConfig::default())?;
    /// store.write(ExtentId(0), b"kept")?;
    /// store.write(ExtentId(1), b"gone")?;
    /// store.delete(ExtentId(1))?;
    /// let (from, records) = store.change_baseline();
    /// let states: Vec<State> = records.map(|(record, _)| record.state()).collect();
    /// assert_eq!(states, [State::Durable, State::Vacant]);
    /// assert!(store.changes_since(from)?.is_empty());
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn change_baseline(&self) -> (u64, impl Iterator<Item = (Snapshot, Tag)> + '_) {
        let from = self.change_seq();
        let core = &self.shared.core;
        // One snapshot and one tag lookup per record, not re-validated: a tag
        // that a commit during the scan forgot comes back empty, and that
        // commit, made after `from` was taken, is numbered `from` or more with
        // a higher version.
        let records = (core.table.allocated_ids(0)).filter_map(|id| {
            let record = core.table.snapshot_waiting(id).ok()?;
            // Never written: no change of it was ever numbered.
            let unused = record.state() == State::Vacant && record.generation() == 0;
            (!unused).then(|| (record, core.tag_of(&record)))
        });
        (from, records)
    }

    /// Keeps the changes numbered `seq` or more retained (beyond
    /// [`change_retention`](crate::store::StoreConfigBuilder::change_retention), up to
    /// [`change_hold_max`](crate::store::StoreConfigBuilder::change_hold_max)) until
    /// the hold is advanced past them or dropped. A consumer that falls behind
    /// then still finds its changes; the hold lasts as long as this store (a
    /// reopen starts the stream afresh). A hold that lost changes (taken below
    /// the oldest retained, or pushed past `change_hold_max`) keeps nothing
    /// more until it is advanced to a number still retained: its consumer
    /// reads [`Error::ChangesTruncated`](crate::Error::ChangesTruncated)
    /// whatever is kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::{ExtentId, MemBackend, Store, StoreConfig};
    ///
    /// let config = StoreConfig::builder().change_retention(1).build()?;
    /// let store = Store::new(MemBackend::new(1), config)?;
    /// let hold = store.hold_changes(store.change_seq());
    /// let from = store.change_seq();
    /// for i in 0..3 {
    ///     store.write(ExtentId(i), b"x")?;
    /// }
    /// assert_eq!(store.changes_since(from)?.len(), 3);
    /// hold.advance(from + 3);
    /// assert_eq!(store.changes_since(from).unwrap_err().code(), "FPRE034");
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn hold_changes(&self, seq: u64) -> ChangeHold {
        self.shared.core.events.changes.hold(seq)
    }
}
